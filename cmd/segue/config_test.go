package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/segue-rtc/segue/configs"
)

// writeConfig writes the example configuration, with its empty trunks
// list replaced by trunks unless that is empty, and returns the file's
// path.
func writeConfig(t *testing.T, trunks string) string {
	t.Helper()
	doc := string(configs.Example)
	if !strings.Contains(doc, "\ntrunks: []\n") {
		t.Fatal("the example configuration has no empty trunks list to replace")
	}
	if trunks != "" {
		doc = strings.Replace(doc, "\ntrunks: []\n", "\ntrunks:\n"+trunks, 1)
	}
	path := filepath.Join(t.TempDir(), "segue.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigValidateCommand(t *testing.T) {
	tests := []struct {
		name   string
		trunks string
		code   int    // exit code, 0 for success
		want   string // in the output
	}{
		{"example as is", "", 0, ": OK"},
		{"srtp over udp", "  - name: pbx\n    uri: \"sip:pbx.example.com\"\n    srtp: true\n", 1,
			"  - trunks[0].srtp: SDES keys would travel in clear over udp; use transport: tls"},
		{"srtp over tls", "  - name: pbx\n    uri: \"sip:pbx.example.com\"\n    transport: tls\n    srtp: true\n", 0, "pbx: sip:pbx.example.com over tls"},
		{"srtp over udp, opted in", "  - name: pbx\n    uri: \"sip:pbx.example.com\"\n    srtp: true\n    srtp_allow_insecure_transport: true\n", 0, ": OK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.trunks)
			var out bytes.Buffer
			root := newRoot()
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs([]string{"config", "validate", "--config", path})
			err := root.Execute()
			code := 0
			var ee exitError
			switch {
			case errors.As(err, &ee):
				code = ee.code
			case err != nil:
				t.Fatalf("validate: %v", err)
			}
			if code != tt.code || !strings.Contains(out.String(), tt.want) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d and %q", code, out.String(), tt.code, tt.want)
			}
		})
	}
}
