package webrtc

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestAudioBothWays sends a 1 kHz Opus tone from the browser and a 440 Hz
// tone from the gateway, and checks what each side heard.
func TestAudioBothWays(t *testing.T) {
	e := newTestEngine(t, Config{})
	b := newBrowser(t, browserOptions{})
	p := connect(t, e, b, PeerOptions{Name: "both-ways"})

	heard := audiotest.NewRecorder(8000)
	if old := p.SwapAudioOut(heard); old != nil {
		t.Fatalf("SwapAudioOut returned %v before any writer was set", old)
	}
	stopMic := b.sendTone(1000)
	defer stopMic()
	stopIn := playTone(t, p.AudioIn(), 440)
	defer stopIn()

	eventually(t, "1.5 s of browser audio", func() bool { return len(heard.Samples()) >= 12000 })
	eventually(t, "1.5 s of gateway audio at the browser", func() bool { return len(b.heard.Samples()) >= 12000 })
	stopMic()
	stopIn()

	assertTone(t, "gateway heard", tail(heard.Samples(), time.Second), 1000)
	assertTone(t, "browser heard", tail(b.heard.Samples(), time.Second), 440)
	if c := p.AudioCodec(); c != "opus" {
		t.Errorf("AudioCodec = %q, want opus", c)
	}
	st := p.Stats()
	t.Logf("stats: %+v", st)
	if st.Inbound.Packets < 50 || st.Outbound.Packets < 50 {
		t.Errorf("stats count %d packets in and %d out, want at least 50 each", st.Inbound.Packets, st.Outbound.Packets)
	}
	if !st.Flowing {
		t.Errorf("Flowing = false while the browser sends")
	}
	// Sender reports go every second or so; the browser's next receiver
	// report then gives the round trip, which on loopback is short.
	eventually(t, "an RTT from receiver reports", func() bool { return p.Stats().RTT > 0 })
	if rtt := p.Stats().RTT; rtt > time.Second {
		t.Errorf("RTT = %v on loopback", rtt)
	}
}

// audioLeg is the gateway's view of a media leg (CONVENTIONS.md); a Peer
// must satisfy it.
type audioLeg interface {
	AudioIn() transcode.PCMWriter
	SwapAudioOut(w transcode.PCMWriter) (old transcode.PCMWriter)
	SendDTMF(ctx context.Context, digits string) error
	Done() <-chan struct{}
	Close() error
}

var _ audioLeg = (*Peer)(nil)

// TestBridgeTwoPeers bridges two browsers through two Peers as the
// gateway does when video starts straight from chat (customer and console
// both in browsers): each hears the other's tone.
func TestBridgeTwoPeers(t *testing.T) {
	e := newTestEngine(t, Config{})
	customer, console := newBrowser(t, browserOptions{}), newBrowser(t, browserOptions{})
	pc := connect(t, e, customer, PeerOptions{Name: "customer"})
	pa := connect(t, e, console, PeerOptions{Name: "console"})
	pc.SwapAudioOut(pa.AudioIn())
	pa.SwapAudioOut(pc.AudioIn())
	defer customer.sendTone(1000)()
	defer console.sendTone(600)()
	// Two Peers, two media clocks, four pion stacks: purity is checked by
	// the single-hop tests.
	assertToneLoose(t, "console heard", heardMore(t, "customer audio at the console", console.heard, 2*time.Second), 1000)
	assertToneLoose(t, "customer heard", heardMore(t, "console audio at the customer", customer.heard, 2*time.Second), 600)
}
