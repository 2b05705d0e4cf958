//go:build e2e

package test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/test/peers"
)

// trunkConfig writes the example configuration with the given trunks
// put first in its trunks list (before the demo phone's) and returns its
// path.
func trunkConfig(t *testing.T, trunks string) string {
	t.Helper()
	dir := t.TempDir()
	init := exec.Command(segueBin, "config", "init")
	init.Dir = dir
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("config init: %v\n%s", err, out)
	}
	path := filepath.Join(dir, "segue.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\ntrunks:\n") {
		t.Fatalf("example configuration has no trunks list to add to:\n%s", b)
	}
	b = []byte(strings.Replace(string(b), "\ntrunks:\n", "\ntrunks:\n"+trunks, 1))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTrunkCheckCommand(t *testing.T) {
	p := peers.StartSIPp(t, "sipp/registrar_check.xml", "127.0.0.1", "-m", "2")
	path := trunkConfig(t, `  - name: pbx
    uri: "sip:`+p.Addr()+`"
    username: segue
    password: s3cret
    register: true
  - name: dead
    uri: "sip:127.0.0.1:`+strconv.Itoa(peers.FreeUDPPort(t, "127.0.0.1"))+`"
    transport: tcp
`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, segueBin, "trunk", "check", "pbx", "--config", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "is usable") {
		t.Fatalf("trunk check pbx: %v\n%s", err, out)
	}
	for _, step := range []string{"resolve", "connect", "options", "register", "unregister"} {
		if !strings.Contains(string(out), step) {
			t.Errorf("no %s step in:\n%s", step, out)
		}
	}
	waitSIPp(t, p)

	out, err = exec.CommandContext(ctx, segueBin, "trunk", "check", "dead", "--config", path).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "NOT usable") {
		t.Fatalf("trunk check dead: %v\n%s", err, out)
	}
}

func TestCallCommand(t *testing.T) {
	p := peers.StartSIPp(t, "sipp/uas_answer.xml", "127.0.0.1", "-m", "1")
	path := trunkConfig(t, `  - name: pbx
    uri: "sip:`+p.Addr()+`"
`)
	rec := filepath.Join(t.TempDir(), "heard.wav")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, segueBin, "call", "--config", path, "--trunk", "pbx", "sip:1001@"+p.Addr(),
		"--tone", "1000", "--dtmf", "12#", "--duration", "2s", "--record", rec,
		"--header", "User-to-User: 636f6e762d3432;encoding=hex", "--header", "X-Segue-Conversation: 42").CombinedOutput()
	if err != nil {
		t.Fatalf("segue call: %v\n%s", err, out)
	}
	for _, want := range []string{"180 Ringing", "codec PCMU", "rtp: sent", "recorded " + rec} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if fi, err := os.Stat(rec); err != nil || fi.Size() < 44 {
		t.Errorf("recording: %v", err)
	}
	waitSIPp(t, p)
}
