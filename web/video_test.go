package web

import (
	"io/fs"
	"strings"
	"testing"
)

// TestVideoScriptsWriteNoHTML holds the video modules to the rule of the
// chat scripts: DOM from createElement and textContent only, no inline
// styles (the pages' CSP has style-src 'self').
func TestVideoScriptsWriteNoHTML(t *testing.T) {
	for _, name := range []string{"video.js", "widget-video.js", "console-video.js"} {
		b, err := fs.ReadFile(Files(), name)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", ".style.", "setAttribute('style'"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s uses %s", name, bad)
			}
		}
	}
	for _, name := range []string{"widget-video.css", "console-video.css"} {
		if b, err := fs.ReadFile(Files(), name); err != nil || len(b) == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
}
