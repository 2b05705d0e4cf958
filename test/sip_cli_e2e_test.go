//go:build e2e

package test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode/audiotest"
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

// TestCallCommand: segue call through a trunk to baresip, which answers
// and plays 440 Hz. The CLI plays 1 kHz and sends DTMF 12#: its recording
// holds baresip's tone at a sane level, its report names the peak it
// heard, baresip received each digit as an RFC 4733 event and recorded
// the CLI's tone.
func TestCallCommand(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tone440.wav")
	if err := audiotest.WriteWAVFile(src, audiotest.Tone(8000, 440, 0.5, 20*time.Second), 8000); err != nil {
		t.Fatal(err)
	}
	phone := peers.StartBaresip(t, "127.0.0.1", "1001", src)
	addr := strings.TrimPrefix(phone.URI(), "sip:1001@")
	path := trunkConfig(t, `  - name: pbx
    uri: "sip:`+addr+`"
`)
	rec := filepath.Join(t.TempDir(), "heard.wav")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, segueBin, "call", "--config", path, "--trunk", "pbx", phone.URI(),
		"--tone", "1000", "--dtmf", "12#", "--duration", "4s", "--record", rec).CombinedOutput()
	if err != nil {
		t.Fatalf("segue call: %v\n%s", err, out)
	}
	t.Logf("segue call:\n%s", out)
	for _, want := range []string{"codec PCM", "peak 440 Hz", "recorded " + rec} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	pcm, rate, err := audiotest.ReadWAVFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	if rate != 8000 || len(pcm) < audiotest.Samples(rate, 3*time.Second) {
		t.Fatalf("recording of %d samples at %d Hz, want 3 s or more at 8 kHz", len(pcm), rate)
	}
	mid := pcm[len(pcm)/4 : len(pcm)*3/4]
	if f := audiotest.PeakFrequency(mid, rate); math.Abs(f-440) > 10 {
		t.Errorf("the recording peaks at %.0f Hz, want baresip's 440", f)
	}
	if l := audiotest.Level(mid); l < -9 || l > -3 {
		t.Errorf("the recording is at %.1f dBFS, want about -6", l)
	}
	// The phone side: DTMF events and the CLI's tone.
	waitFor(t, "baresip's DTMF", func() error {
		for _, d := range []string{"1", "2", "#"} {
			if !strings.Contains(phone.Output(), "received event: '"+d+"' (end=1)") {
				return fmt.Errorf("baresip has not reported DTMF %q", d)
			}
		}
		return nil
	})
	heard, hrate := baresipHeard(t, phone.Recordings, 500*time.Millisecond, time.Second)
	if f := audiotest.PeakFrequency(heard, hrate); math.Abs(f-1000) > 10 {
		t.Errorf("baresip heard a peak at %.0f Hz, want the CLI's 1000", f)
	}
}

// TestCallCommandHeaders: the context headers given with --header reach
// the far end (SIPp checks User-to-User, X-Segue-Conversation and the
// telephone-event offer).
func TestCallCommandHeaders(t *testing.T) {
	p := peers.StartSIPp(t, "sipp/uas_answer.xml", "127.0.0.1", "-m", "1")
	path := trunkConfig(t, `  - name: pbx
    uri: "sip:`+p.Addr()+`"
`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, segueBin, "call", "--config", path, "--trunk", "pbx", "sip:1001@"+p.Addr(),
		"--tone", "1000", "--duration", "1s",
		"--header", "User-to-User: 636f6e762d3432;encoding=hex", "--header", "X-Segue-Conversation: 42").CombinedOutput()
	if err != nil {
		t.Fatalf("segue call: %v\n%s", err, out)
	}
	for _, want := range []string{"180 Ringing", "codec PCMU", "rtp: sent"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	waitSIPp(t, p)
}
