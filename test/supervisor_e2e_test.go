//go:build e2e

package test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// Tones of the monitoring test: the customer's microphone, the desk
// phone (deskToneHz) and the supervisor's microphone.
const (
	customerToneHz   = 1000.0
	supervisorToneHz = 2000.0
)

// toneLevel is the level in dBFS of freq in pcm.
func toneLevel(pcm transcode.PCM16, freq float64) float64 {
	return audiotest.GoertzelLevel(pcm, 8000, freq)
}

// phoneRecording is what baresip recorded of the call, read once the
// call ended (baresip writes the file out then).
func phoneRecording(t *testing.T, phone *peers.Baresip) transcode.PCM16 {
	t.Helper()
	var pcm transcode.PCM16
	waitFor(t, "the desk phone's recording", func() error {
		if !strings.Contains(phone.Output(), "terminated") {
			return errors.New("the call goes on at the desk phone")
		}
		heard, _ := phone.Recordings()
		if len(heard) != 1 {
			return fmt.Errorf("%d recordings, want 1", len(heard))
		}
		f, err := os.Open(heard[0])
		if err != nil {
			return err
		}
		defer f.Close()
		p, rate, err := audiotest.ReadWAV(f)
		if err != nil {
			return err
		}
		if rate != 8000 || len(p) < 8000 {
			return fmt.Errorf("%d samples at %d Hz", len(p), rate)
		}
		pcm = p
		return nil
	})
	return pcm
}

// TestSupervisorMonitorsCall: Ann (a pion peer sending 1 kHz) calls
// Alice's desk phone (baresip sending 440 Hz). Sam, a supervisor, opens a
// monitoring peer connection from his console (a pion peer sending
// 2 kHz): he hears both sides while nobody hears him; whispering, the
// desk phone hears him and Ann does not; barging, both do. Alice, a plain
// agent, may not monitor, and nothing of it reaches Ann's transcript.
func TestSupervisorMonitorsCall(t *testing.T) {
	phone := startBaresipPhone(t)
	g := startVoiceGateway(t, toDeskPhone(phone), withSupervisor())
	ctx := context.Background()

	aliceWS := agentWS(t, g, g.login(t, "alice"))
	annV := g.visitor(t, "127.0.0.2")
	conv, token := annV.newConversation("Ann")
	ann := newRTCPeer(t, annV.socket(token), "", rtcOptions{toneHz: customerToneHz})
	aliceWS.accept(conv, "alice")
	if code := ann.offer("voice.start"); code != "" {
		t.Fatalf("voice.start: %s", code)
	}
	waitFor(t, "the call connected", func() error {
		if s := ann.state(); s != "connected" {
			return fmt.Errorf("call %q", s)
		}
		return nil
	})

	// A plain agent's console may not listen in.
	eve := newRTCPeer(t, agentWS(t, g, g.login(t, "bob")), conv, rtcOptions{})
	if code := eve.offer("monitor.start"); code != "not_supervisor" {
		t.Errorf("Bob (an agent) asking to monitor: %q, want not_supervisor", code)
	}

	sam := newRTCPeer(t, agentWS(t, g, g.login(t, "sam")), conv, rtcOptions{toneHz: supervisorToneHz})
	if code := sam.offer("monitor.start"); code != "" {
		t.Fatalf("monitor.start: %s", code)
	}
	sam.connected(t, "Sam's monitoring peer")
	setMode := func(mode string) {
		t.Helper()
		if err := sendFrame(ctx, sam.w, map[string]any{"type": "monitor.mode", "conversation_id": conv, "state": mode}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // the new mode, well past the buffers of a loaded machine
	}
	const present, absent = -30.0, -45.0
	// Each mode is measured over the last 800 ms of its 2 s, so that
	// audio of the mode before, still in the buffers, stays out.
	const window = 800 * time.Millisecond
	hearsSam := func(mode, who string, pcm transcode.PCM16, want bool) {
		t.Helper()
		l := toneLevel(pcm, supervisorToneHz)
		t.Logf("%s: %s hears Sam's %.0f Hz at %.1f dBFS", mode, who, supervisorToneHz, l)
		if want && l < present {
			t.Errorf("%s: %s does not hear Sam (%.1f dBFS)", mode, who, l)
		}
		if !want && l > absent {
			t.Errorf("%s: %s hears Sam at %.1f dBFS", mode, who, l)
		}
	}
	type phase struct {
		mode  string
		at    time.Time
		hears bool
	}
	var phases []phase
	check := func(mode string, phoneHearsSam, annHearsSam bool) {
		t.Helper()
		samHeard := lastOf(sam.heard, window)
		if l := toneLevel(samHeard, customerToneHz); l < present {
			t.Errorf("%s: Sam hears Ann's %.0f Hz at %.1f dBFS", mode, customerToneHz, l)
		}
		if l := toneLevel(samHeard, deskToneHz); l < present {
			t.Errorf("%s: Sam hears the desk phone's %.0f Hz at %.1f dBFS", mode, deskToneHz, l)
		}
		annHeard := lastOf(ann.heard, window)
		if l := toneLevel(annHeard, deskToneHz); l < present {
			t.Errorf("%s: Ann hears the desk phone at %.1f dBFS", mode, l)
		}
		hearsSam(mode, "Ann", annHeard, annHearsSam)
		// The desk phone's recording is read once the call ended: this
		// phase is the second before now.
		phases = append(phases, phase{mode, time.Now(), phoneHearsSam})
	}
	time.Sleep(2 * time.Second)
	check("listen", false, false)
	setMode("whisper")
	check("whisper", true, false)
	setMode("barge")
	check("barge", true, true)
	setMode("listen")
	check("listen again", false, false)

	if err := sendFrame(ctx, sam.w, map[string]any{"type": "monitor.stop", "conversation_id": conv}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the monitoring peer closed", func() error {
		if s := sam.pc.ConnectionState().String(); s != "closed" && s != "failed" && s != "disconnected" {
			return fmt.Errorf("state %s", s)
		}
		return nil
	})
	if err := sendFrame(ctx, ann.w, map[string]any{"type": "voice.hangup"}); err != nil {
		t.Fatal(err)
	}
	hungUp := time.Now()
	rec := phoneRecording(t, phone)
	for _, p := range phases {
		// The recording ends with the hang-up: the phase's window is
		// counted back from there, with 200 ms more for the path's delay.
		end := len(rec) - audiotest.Samples(8000, hungUp.Sub(p.at)+200*time.Millisecond)
		n := audiotest.Samples(8000, window)
		if end < n {
			t.Fatalf("%s: the desk phone's recording (%d samples) does not reach back to it", p.mode, len(rec))
		}
		win := rec[end-n : end]
		if l := toneLevel(win, customerToneHz); l < present {
			t.Errorf("%s: the desk phone hears Ann at %.1f dBFS", p.mode, l)
		}
		hearsSam(p.mode, "the desk phone", win, p.hears)
	}

	// Ann's transcript says nothing of Sam.
	annAPI := g.client(t)
	annAPI.token = token
	for _, m := range annAPI.messages(conv) {
		if strings.Contains(strings.ToLower(m.Text), "monitor") || strings.Contains(m.Text, "Sam") {
			t.Errorf("Ann's transcript tells of the supervisor: %q", m.Text)
		}
	}
}
