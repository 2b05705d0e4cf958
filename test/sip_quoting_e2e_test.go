//go:build e2e

package test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/test/peers"
)

// frames reads a customer's socket on its own goroutine, so that a test
// can wait for a frame with a timeout (a read whose context ends closes
// a coder/websocket connection) and see that one did not come.
type frames struct {
	t  *testing.T
	ch chan frame
}

// pumpFrames starts reading w until its connection closes.
func pumpFrames(t *testing.T, w *wsConn) *frames {
	f := &frames{t: t, ch: make(chan frame, 256)}
	go func() {
		defer close(f.ch)
		for {
			_, b, err := w.c.Read(context.Background())
			if err != nil {
				return
			}
			var fr frame
			if json.Unmarshal(b, &fr) == nil {
				f.ch <- fr
			}
		}
	}()
	return f
}

// next returns the next frame, failing the test after 20 s.
func (f *frames) next(what string) frame {
	f.t.Helper()
	select {
	case fr, ok := <-f.ch:
		if !ok {
			f.t.Fatalf("waiting for %s: the socket closed", what)
		}
		return fr
	case <-time.After(20 * time.Second):
		f.t.Fatalf("waiting for %s: no frame in 20 s", what)
		return nil
	}
}

// expect skips frames until one of type typ.
func (f *frames) expect(typ string) frame {
	f.t.Helper()
	for {
		if fr := f.next("a " + typ + " frame"); fr.typ() == typ {
			return fr
		}
	}
}

// quiet reports whether no frame of type typ arrives within d.
func (f *frames) quiet(typ string, d time.Duration) bool {
	deadline := time.After(d)
	for {
		select {
		case fr, ok := <-f.ch:
			if !ok {
				return true
			}
			if fr.typ() == typ {
				return false
			}
		case <-deadline:
			return true
		}
	}
}

// startPionVoice makes the customer, with a pion peer connection for a
// browser, press the mic (voice.start with its offer) and waits until
// the call is connected. It fails the test if the call fails or ends
// first.
func startPionVoice(t *testing.T, w *wsConn, f *frames, b *pionBrowser) {
	t.Helper()
	w.send(map[string]any{"type": "voice.start", "sdp": b.offer(t)})
	for {
		fr := f.next("the call to connect")
		if b.signalled(t, fr) {
			continue
		}
		switch fr.typ() {
		case "call":
			c, _ := fr["call"].(map[string]any)
			switch c["state"] {
			case "connected":
				return
			case "failed", "ended":
				t.Fatalf("call %v: %v", c["state"], c["reason"])
			}
		case "error":
			t.Fatalf("error frame: %v", fr)
		}
	}
}

// awaitCallState skips frames until the call frame says state.
func (f *frames) awaitCallState(state string) {
	f.t.Helper()
	for {
		fr := f.next("a " + state + " call")
		if c, ok := fr["call"].(map[string]any); ok && fr.typ() == "call" && c["state"] == state {
			return
		}
	}
}

// TestSIPDisplayNameQuoting: customers whose names are built to forge
// the From header escalate to voice; the PBX (SIPp) fails any call whose
// From is not a well-formed quoted display name followed by the trunk's
// own URI. Both calls connect, and the PBX's trace shows the names
// escaped as quoted-pairs.
func TestSIPDisplayNameQuoting(t *testing.T) {
	pbx := peers.StartSIPp(t, "sipp/uas_from_check.xml", "127.0.0.1", "-m", "2")
	g := startVoiceGateway(t, voiceConfig{
		trunks: []voiceTrunk{{name: "pbx", addr: pbx.Addr()}},
		queues: []voiceQueue{{name: "support", trunk: "pbx", dial: "sip:600@" + pbx.Addr()}},
	})
	names := []struct{ typed, wire string }{
		{`Evil" <sip:+19005551234@attacker.example>;x="`, `From: "Evil\" <sip:+19005551234@attacker.example>;x=\"" <sip:segue@127.0.0.1>;tag=`},
		{`Ann Lee\`, `From: "Ann Lee\\" <sip:segue@127.0.0.1>;tag=`},
	}
	for _, n := range names {
		c, _ := g.newConversation(t, n.typed)
		w := customerWS(t, g, c.token)
		f := pumpFrames(t, w)
		b := newBrowser(t, 1000)
		startPionVoice(t, w, f, b)
		w.send(map[string]any{"type": "voice.hangup"})
		f.awaitCallState("ended")
		b.close()
	}
	waitSIPp(t, pbx)

	logs, _ := filepath.Glob(filepath.Join(pbx.Dir, "*_messages.log"))
	if len(logs) == 0 {
		t.Fatal("no SIPp message trace")
	}
	trace, err := os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !strings.Contains(string(trace), n.wire) {
			t.Errorf("the PBX never saw %q", n.wire)
		}
	}
	if strings.Contains(string(trace), "From: \"Evil\" <sip:+1900") {
		t.Error("the PBX saw the forged From")
	}
}
