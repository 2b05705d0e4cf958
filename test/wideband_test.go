// No build tag: this runs in plain `go test ./...`, with pion peer
// connections standing in for the customer's browser and the console,
// and, for the calls, an in-process SIP desk phone.

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	pwebrtc "github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// wideHz is above the 4 kHz that 8 kHz audio can carry: heard at its
// frequency, it proves that the audio went browser to browser wideband.
const wideHz = 6000

// wideNarrowHint is the narrowband hint the gateway puts in the SDP of a
// peer that a call uses.
const wideNarrowHint = "maxplaybackrate=8000"

// wideBrowser is a pion peer connection standing in for a browser that
// sends full band Opus (encoded from 48 kHz, whatever the SDP hints) and
// decodes what it receives at 48 kHz. It keeps the payloads it sent and
// the audio packets it received, and runs its side of the signalling on
// its socket for the whole test.
type wideBrowser struct {
	t     *testing.T
	name  string
	pc    *pwebrtc.PeerConnection
	heard *audiotest.Recorder // at 48 kHz
	stop  chan struct{}
	wg    sync.WaitGroup

	mu     sync.Mutex
	sent   [][]byte
	got    []widePacket
	frames []map[string]json.RawMessage // every frame of its socket, in order
	err    error                        // the signalling loop's, once it stopped
}

// widePacket is an audio packet a wideBrowser received.
type widePacket struct {
	ssrc    uint32
	seq     uint16
	ts      uint32
	payload []byte
}

// newWideBrowser starts a browser whose microphone plays the sum of
// tones at freqs, 0.3 of full scale each.
func newWideBrowser(t *testing.T, name string, freqs ...float64) *wideBrowser {
	t.Helper()
	pc, err := loopbackAPI(t).NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	b := &wideBrowser{t: t, name: name, pc: pc, heard: audiotest.NewRecorder(48000), stop: make(chan struct{})}
	track, err := pwebrtc.NewTrackLocalStaticSample(pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	enc, err := transcode.NewOpusEncoder(wideMic{b, track}, 48000, transcode.OpusConfig{Bitrate: 32000})
	if err != nil {
		t.Fatal(err)
	}
	b.wg.Add(1)
	go func() { // the microphone, in 20 ms frames of a continuous signal
		defer b.wg.Done()
		tone := audiotest.Tones(48000, 0.3, time.Second, freqs...)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for off := 0; ; off = (off + 960) % len(tone) {
			select {
			case <-b.stop:
				return
			case <-tk.C:
				_ = enc.WriteSample(tone[off : off+960])
			}
		}
	}()
	pc.OnTrack(func(tr *pwebrtc.TrackRemote, _ *pwebrtc.RTPReceiver) {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			var dec transcode.BytesWriter
			if tr.Kind() == pwebrtc.RTPCodecTypeAudio {
				d, err := transcode.NewOpusDecoder(b.heard)
				if err != nil {
					t.Errorf("%s: decoder: %v", name, err)
					return
				}
				dec = d
			}
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				if dec == nil || pkt.PayloadType != uint8(tr.PayloadType()) {
					continue
				}
				b.mu.Lock()
				b.got = append(b.got, widePacket{ssrc: pkt.SSRC, seq: pkt.SequenceNumber, ts: pkt.Timestamp, payload: pkt.Payload})
				b.mu.Unlock()
				_ = dec.WriteSample(pkt.Payload)
			}
		}()
	})
	t.Cleanup(b.close)
	return b
}

// wideMic sends the microphone's Opus payloads and keeps them.
type wideMic struct {
	b     *wideBrowser
	track *pwebrtc.TrackLocalStaticSample
}

func (m wideMic) WriteSample(p []byte) error {
	p = append([]byte(nil), p...)
	m.b.mu.Lock()
	m.b.sent = append(m.b.sent, p)
	m.b.mu.Unlock()
	return m.track.WriteSample(media.Sample{Data: p, Duration: 20 * time.Millisecond})
}
func (wideMic) SampleRate() int { return transcode.OpusClockRate }
func (wideMic) String() string  { return "wide mic" }
func (wideMic) Close() error    { return nil }

func (b *wideBrowser) close() { closePeer(b.pc, b.stop, &b.wg) }

// wideCustomer starts the customer's browser, its microphone playing
// freqs, on the chat's customer socket, and has it send start
// ("video.start" or "voice.start") with its offer; it waits for the
// gateway's answer.
func wideCustomer(t *testing.T, ctx context.Context, chat videoChat, start string, freqs ...float64) *wideBrowser {
	t.Helper()
	b := newWideBrowser(t, "customer", freqs...)
	b.run(ctx, chat.cws, chat.cframes, chat.convID)
	chat.cws.send(map[string]any{"type": start, "sdp": b.offer()})
	b.waitFrame("the answer to "+start, 0, wideIsType("rtc.answer"))
	return b
}

// wideConsole starts the console's browser, its microphone playing
// freqs, on the chat's agent socket, and joins the conversation's media
// with it; it waits for the gateway's answer.
func wideConsole(t *testing.T, ctx context.Context, chat videoChat, freqs ...float64) *wideBrowser {
	t.Helper()
	b := newWideBrowser(t, "console", freqs...)
	b.run(ctx, chat.aws, chat.aframes, chat.convID)
	chat.aws.send(map[string]any{"type": "media.join", "conversation_id": chat.convID, "sdp": b.offer()})
	b.waitFrame("the answer to media.join", 0, wideIsType("rtc.answer"))
	return b
}

// offer returns a complete offer of the connection as it is now.
func (b *wideBrowser) offer() string {
	return (&pionBrowser{pc: b.pc}).offer(b.t)
}

// run answers the gateway's signalling on a socket (the conversation's,
// for the console) until ctx ends, and keeps every frame for the waits.
func (b *wideBrowser) run(ctx context.Context, w ws, frames <-chan []byte, convID string) {
	go func() {
		// signal only uses the peer connection of the pionBrowser.
		err := signal(ctx, w, frames, &pionBrowser{pc: b.pc}, convID, func(f map[string]json.RawMessage) bool {
			if f != nil {
				b.mu.Lock()
				b.frames = append(b.frames, f)
				b.mu.Unlock()
			}
			return false
		})
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
	}()
}

// waitFrame waits for a frame after the first `after` ones that match
// returns true, and returns its index.
func (b *wideBrowser) waitFrame(what string, after int, match func(f map[string]json.RawMessage) bool) int {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b.mu.Lock()
		frames, err := b.frames, b.err
		b.mu.Unlock()
		for i := after; i < len(frames); i++ {
			if match(frames[i]) {
				return i
			}
		}
		if err != nil {
			b.t.Fatalf("%s: signalling stopped while waiting for %s: %v", b.name, what, err)
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: timed out waiting for %s", b.name, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// frameCount is how many frames arrived so far.
func (b *wideBrowser) frameCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.frames)
}

// frame returns frame i.
func (b *wideBrowser) frame(i int) map[string]json.RawMessage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.frames[i]
}

func wideIsType(typ string) func(map[string]json.RawMessage) bool {
	return func(f map[string]json.RawMessage) bool { return str(f["type"]) == typ }
}

// wideCall matches call frames in a state.
func wideCall(state string) func(map[string]json.RawMessage) bool {
	return func(f map[string]json.RawMessage) bool {
		if str(f["type"]) != "call" {
			return false
		}
		var c struct{ State string }
		_ = json.Unmarshal(f["call"], &c)
		return c.State == state
	}
}

// sentHas reports whether the browser sent p, byte for byte.
func (b *wideBrowser) sentHas(p []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, q := range b.sent {
		if bytes.Equal(p, q) {
			return true
		}
	}
	return false
}

// received returns the audio packets received so far.
func (b *wideBrowser) received() []widePacket {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]widePacket(nil), b.got...)
}

// hears waits for d more of received audio past a settling half second,
// then checks that it holds each of freqs at a good level (each tone of a
// wideBrowser is -10.5 dBFS).
func (b *wideBrowser) hears(what string, d time.Duration, freqs ...float64) {
	b.t.Helper()
	start := len(b.heard.Samples()) + audiotest.Samples(48000, 500*time.Millisecond)
	n := audiotest.Samples(48000, d)
	deadline := time.Now().Add(20 * time.Second)
	for len(b.heard.Samples()) < start+n {
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: %s: only %d of %d samples arrived", b.name, what, len(b.heard.Samples())-start, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := b.heard.Samples()[start : start+n]
	for _, f := range freqs {
		if l := audiotest.GoertzelLevel(s, 48000, f); l < -20 {
			b.t.Errorf("%s: %s: %.1f dBFS at %.0f Hz, want about -10 (peak at %.0f Hz)", b.name, what, l, f, audiotest.PeakFrequency(s, 48000))
		} else {
			b.t.Logf("%s: %s: %.1f dBFS at %.0f Hz", b.name, what, l, f)
		}
	}
}

// checkStream checks that the audio packets received form one stream:
// one SSRC, sequence numbers one apart, timestamps that increase. It
// returns how many packets carried what from sent (relayed untouched).
func (b *wideBrowser) checkStream(from *wideBrowser) (relayed int) {
	b.t.Helper()
	got := b.received()
	for i, p := range got {
		if from.sentHas(p.payload) {
			relayed++
		}
		if i == 0 {
			continue
		}
		prev := got[i-1]
		switch {
		case p.ssrc != prev.ssrc:
			b.t.Errorf("%s: packet %d: SSRC %d after %d", b.name, i, p.ssrc, prev.ssrc)
		case p.seq != prev.seq+1:
			b.t.Errorf("%s: packet %d: sequence number %d after %d", b.name, i, p.seq, prev.seq)
		case int32(p.ts-prev.ts) <= 0:
			b.t.Errorf("%s: packet %d: timestamp %d after %d", b.name, i, p.ts, prev.ts)
		}
	}
	return relayed
}

// wideRemoteSDP is the gateway's last description the browser applied.
func (b *wideBrowser) wideRemoteSDP() string {
	if d := b.pc.RemoteDescription(); d != nil {
		return d.SDP
	}
	return ""
}

// TestWidebandVideoFromChat: video straight from the chat carries the
// customer's and the console's audio wideband both ways, relayed
// untouched, and neither browser is asked for narrowband Opus.
func TestWidebandVideoFromChat(t *testing.T) {
	ts := startVideoGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	chat := openVideoChat(t, ctx, ts, "Ann", "alice")

	customer := wideCustomer(t, ctx, chat, "video.start", wideHz)
	console := wideConsole(t, ctx, chat, 2500, 7000)
	for _, b := range []*wideBrowser{customer, console} {
		if sdp := b.wideRemoteSDP(); !strings.Contains(sdp, "opus/48000") || strings.Contains(sdp, wideNarrowHint) {
			t.Errorf("%s: the gateway's answer asks for narrowband Opus:\n%s", b.name, sdp)
		}
	}

	console.hears("the customer", time.Second, wideHz)
	customer.hears("the console", time.Second, 2500, 7000)
	if n := console.checkStream(customer); n < 50 {
		t.Errorf("the console received %d packets relayed untouched from the customer", n)
	}
	if n := customer.checkStream(console); n < 50 {
		t.Errorf("the customer received %d packets relayed untouched from the console", n)
	}
}

// wideCallGateway runs a gateway with a trunk to a desk phone that plays
// 440 Hz, and Alice, whose phone it is.
func wideCallGateway(t *testing.T) (*deskPhone, *httptest.Server) {
	t.Helper()
	phone := startDeskPhone(t, 440)
	ts := deskPhoneGateway(t, phone, fmt.Sprintf(`, phone: "sip:1001@%s"`, phone.srv.Addr("udp")))
	return phone, ts
}

// wideCallChat opens a chat on a wideCallGateway. Its context ends when
// the test does, or after 120 s.
func wideCallChat(t *testing.T) (*deskPhone, context.Context, videoChat) {
	t.Helper()
	phone, ts := wideCallGateway(t)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	t.Cleanup(cancel)
	return phone, ctx, openVideoChat(t, ctx, ts, "Ann", "alice")
}

// widePhoneHears checks the desk phone's last second: a peak at hz.
func widePhoneHears(t *testing.T, phone *deskPhone, what string, hz float64) {
	t.Helper()
	time.Sleep(1500 * time.Millisecond)
	s := lastOf(phone.heard, time.Second)
	if f := audiotest.PeakFrequency(s, 8000); f < hz-20 || f > hz+20 {
		t.Errorf("%s: the desk phone hears a peak at %.0f Hz, want %.0f Hz", what, f, hz)
	} else {
		t.Logf("%s: the desk phone hears %.0f Hz at %.1f dBFS", what, f, audiotest.Level(s))
	}
}

// widePacketsReceived is the phone side's packet count of a call frame.
func widePacketsReceived(f map[string]json.RawMessage) uint64 {
	var c struct {
		Quality struct {
			PacketsReceived uint64 `json:"packets_received"`
		}
	}
	_ = json.Unmarshal(f["call"], &c)
	return c.Quality.PacketsReceived
}

// TestWidebandCallMovesToTheConsoleAndBack: during a phone call the agent
// moves the audio to the console: the customer and the console then hear
// each other wideband, while the desk phone's RTP still keeps the call
// alive; moved back, the desk phone and the customer hear each other
// again. The customer's browser sees one stream throughout.
func TestWidebandCallMovesToTheConsoleAndBack(t *testing.T) {
	phone, ctx, chat := wideCallChat(t)

	customer := wideCustomer(t, ctx, chat, "voice.start", 1000, wideHz)
	if sdp := customer.wideRemoteSDP(); !strings.Contains(sdp, wideNarrowHint) {
		t.Errorf("the answer for a call does not ask for narrowband Opus:\n%s", sdp)
	}
	customer.waitFrame("the call to connect", 0, wideCall("connected"))
	widePhoneHears(t, phone, "the call", 1000)
	customer.hears("the desk phone", time.Second, 440)

	console := wideConsole(t, ctx, chat, 2500)
	if sdp := console.wideRemoteSDP(); strings.Contains(sdp, wideNarrowHint) {
		t.Errorf("the console's answer asks for narrowband Opus:\n%s", sdp)
	}

	// To the console: wideband both ways, the phone's RTP still counted.
	mark := customer.frameCount()
	chat.aws.send(map[string]any{"type": "voice.route", "conversation_id": chat.convID, "state": "console"})
	console.hears("the customer, moved to the console", time.Second, 1000, wideHz)
	customer.hears("the console", time.Second, 2500)
	first := customer.waitFrame("a call update on the console", mark, wideCall("connected"))
	second := customer.waitFrame("another call update on the console", first+1, wideCall("connected"))
	if a, b := widePacketsReceived(customer.frame(first)), widePacketsReceived(customer.frame(second)); b <= a {
		t.Errorf("the phone side's packets stopped counting on the console: %d then %d", a, b)
	}

	// Back to the desk phone.
	chat.aws.send(map[string]any{"type": "voice.route", "conversation_id": chat.convID, "state": "phone"})
	customer.hears("the desk phone again", time.Second, 440)
	widePhoneHears(t, phone, "back on the phone", 1000)

	if n := customer.checkStream(console); n < 50 {
		t.Errorf("the customer received %d packets relayed untouched from the console", n)
	}
	chat.cws.send(map[string]any{"type": "voice.hangup"})
	customer.waitFrame("the call to end", 0, wideCall("ended"))
}

// TestWidebandCallOnTheVideoConnection: video from the chat is wideband;
// a call on the same connection asks for narrowband again in its answer,
// and once it ends the gateway offers wideband again and the console
// hears the customer's full band once more.
func TestWidebandCallOnTheVideoConnection(t *testing.T) {
	phone, ctx, chat := wideCallChat(t)

	customer := wideCustomer(t, ctx, chat, "video.start", 1000, wideHz)
	console := wideConsole(t, ctx, chat, 2500)
	console.hears("the customer's video call", time.Second, wideHz)

	// The call, on the same connection: its answer has the hints.
	mark := customer.frameCount()
	chat.cws.send(map[string]any{"type": "voice.start", "sdp": customer.offer()})
	customer.waitFrame("the call's answer", mark, wideIsType("rtc.answer"))
	if sdp := customer.wideRemoteSDP(); !strings.Contains(sdp, wideNarrowHint) {
		t.Errorf("the answer for a call on the video connection does not ask for narrowband Opus:\n%s", sdp)
	}
	customer.waitFrame("the call to connect", mark, wideCall("connected"))
	widePhoneHears(t, phone, "the call", 1000)
	customer.hears("the desk phone", time.Second, 440)

	// The call ends; video goes on: the gateway offers wideband again.
	mark = customer.frameCount()
	chat.cws.send(map[string]any{"type": "voice.hangup"})
	customer.waitFrame("the call to end", mark, wideCall("ended"))
	i := customer.waitFrame("the gateway's offer", mark, wideIsType("rtc.offer"))
	if sdp := str(customer.frame(i)["sdp"]); strings.Contains(sdp, wideNarrowHint) || !strings.Contains(sdp, "opus/48000") {
		t.Errorf("the offer after the call asks for narrowband Opus:\n%s", sdp)
	}
	console.hears("the customer after the call", time.Second, 1000, wideHz)
	customer.hears("the console after the call", time.Second, 2500)
	if n := customer.checkStream(console); n < 50 {
		t.Errorf("the customer received %d packets relayed untouched from the console", n)
	}
}
