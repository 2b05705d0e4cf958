package web

import (
	"io/fs"
	"strings"
	"testing"
)

// TestCallScriptsWriteNoHTML holds the voice modules to the same rule as
// the chat scripts: DOM from createElement and textContent only.
func TestCallScriptsWriteNoHTML(t *testing.T) {
	for _, name := range []string{"call.js", "console-call.js"} {
		b, err := fs.ReadFile(Files(), name)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", ".style."} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s uses %s", name, bad)
			}
		}
	}
}
