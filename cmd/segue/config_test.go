package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/segue-rtc/segue/configs"
	"github.com/segue-rtc/segue/gateway"
)

// writeConfig writes the example configuration, with trunks put first
// in its trunks list (before the demo phone's) unless that is empty, and
// returns the file's path.
func writeConfig(t *testing.T, trunks string) string {
	t.Helper()
	doc := string(configs.Example)
	if !strings.Contains(doc, "\ntrunks:\n") {
		t.Fatal("the example configuration has no trunks list to add to")
	}
	if trunks != "" {
		doc = strings.Replace(doc, "\ntrunks:\n", "\ntrunks:\n"+trunks, 1)
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

// run executes the CLI with args and returns its output and error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestConfigInitGeneratesAPassword: `segue config init` writes the
// example with a fresh password for alice instead of the demo one, prints
// that password once, and the file is not world-readable.
func TestConfigInitGeneratesAPassword(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "segue.yaml")
	out, err := run(t, "config", "init", "--config", path)
	if err != nil {
		t.Fatalf("config init: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`agent alice's password: (\S+)\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no password in the output:\n%s", out)
	}
	pw := m[1]
	if strings.Count(out, pw) != 1 || len(pw) < 16 {
		t.Fatalf("password %q shown %d times", pw, strings.Count(out, pw))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(configs.DemoHash)) || bytes.Contains(data, []byte("segue-demo")) || bytes.Contains(data, []byte(pw)) {
		t.Fatal("the written file has the demo password or the password in clear")
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm()&0o007 != 0 {
		t.Fatalf("mode %o", fi.Mode().Perm())
	}
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		t.Fatalf("the written file: %v", err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(cfg.Agents[0].PasswordHash), []byte(pw)); err != nil {
		t.Fatalf("the printed password does not match alice's hash: %v", err)
	}
	// The generated password is not the demo one: the same file may
	// listen on every interface.
	open := strings.Replace(string(data), `listen: "127.0.0.1:8080"`, `listen: ":8080"`, 1)
	if _, err := gateway.ParseConfig([]byte(open), os.LookupEnv); err != nil {
		t.Fatalf("on all interfaces: %v", err)
	}
	// A second init makes another password.
	out2, err := run(t, "config", "init", "--force", "--config", path)
	if err != nil || strings.Contains(out2, pw) {
		t.Fatalf("second init: %v\n%s", err, out2)
	}
}

// TestWorldReadableConfigWarns: a configuration holding secrets that
// every user may read is warned about; the demo configuration is not.
func TestWorldReadableConfigWarns(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "segue.yaml")
	if _, err := run(t, "config", "init", "--config", path); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if w := configWarnings(path, cfg); len(w) != 0 {
		t.Fatalf("warnings for a 0640 file: %v", w)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	w := strings.Join(configWarnings(path, cfg), "\n")
	if !strings.Contains(w, "readable by every user") || !strings.Contains(w, "chmod o-rwx") {
		t.Fatalf("no warning for a 0644 file: %q", w)
	}
	out, err := run(t, "config", "validate", "--config", path)
	if err != nil || !strings.Contains(out, "warning: "+path+" is readable by every user") {
		t.Fatalf("config validate: %v\n%s", err, out)
	}
	demo := filepath.Join(dir, "demo.yaml")
	if err := os.WriteFile(demo, configs.Example, 0o644); err != nil {
		t.Fatal(err)
	}
	dcfg, err := gateway.LoadConfig(demo)
	if err != nil {
		t.Fatal(err)
	}
	if w := configWarnings(demo, dcfg); len(w) != 0 {
		t.Fatalf("warnings for the demo configuration: %v", w)
	}
}

// TestServeRefusesTheDemoPasswordOnAllInterfaces: serve exits before
// listening, naming the key and how to set a password.
func TestServeRefusesTheDemoPasswordOnAllInterfaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "segue.yaml")
	doc := strings.Replace(string(configs.Example), `listen: "127.0.0.1:8080"`, `listen: ":8080"`, 1)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "serve", "--config", path)
	if err == nil || !strings.Contains(err.Error(), "agents[0].password_hash") || !strings.Contains(err.Error(), "segue agent passwd") {
		t.Fatalf("serve: %v\n%s", err, out)
	}
}
