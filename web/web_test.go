package web

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

func TestFilesAtRoot(t *testing.T) {
	for _, name := range []string{"index.html", "widget.js", "widget.css", "console.html", "console.js", "console.css", "chat.js"} {
		b, err := fs.ReadFile(Files(), name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(b) == 0 {
			t.Errorf("%s: empty", name)
		}
	}
}

// TestPagesFollowCSP checks the rules that the pages' Content-Security-Policy
// enforces in the browser: no inline scripts, styles or event handlers.
func TestPagesFollowCSP(t *testing.T) {
	inlineScript := regexp.MustCompile(`(?is)<script(?:\s[^>]*)?>\s*[^<\s]`)
	styleAttr := regexp.MustCompile(`(?i)\sstyle\s*=`)
	styleTag := regexp.MustCompile(`(?i)<style[\s>]`)
	handlerAttr := regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	jsURL := regexp.MustCompile(`(?i)javascript:`)
	for _, name := range []string{"index.html", "console.html"} {
		b, err := fs.ReadFile(Files(), name)
		if err != nil {
			t.Fatal(err)
		}
		html := string(b)
		for what, re := range map[string]*regexp.Regexp{
			"inline script": inlineScript, "style attribute": styleAttr, "style element": styleTag,
			"event handler attribute": handlerAttr, "javascript: URL": jsURL,
		} {
			if loc := re.FindStringIndex(html); loc != nil {
				t.Errorf("%s: %s at byte %d: %q", name, what, loc[0], html[loc[0]:min(len(html), loc[1]+20)])
			}
		}
	}
}

// TestScriptsWriteNoHTML keeps user text out of the HTML parser: the scripts
// build the DOM with createElement and textContent only.
func TestScriptsWriteNoHTML(t *testing.T) {
	for _, name := range []string{"widget.js", "console.js", "chat.js"} {
		b, err := fs.ReadFile(Files(), name)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s uses %s", name, bad)
			}
		}
	}
}
