package webrtc

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// wideHz is a tone above the 4 kHz that narrowband audio (8 kHz sampling)
// can carry: heard at its frequency, it proves a wideband path.
const wideHz = 6000

// sentPayloads records what a browser's microphone sent.
type sentPayloads struct {
	mu   sync.Mutex
	list [][]byte
}

func (s *sentPayloads) add(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, p)
}

// has reports whether p was sent, byte for byte.
func (s *sentPayloads) has(p []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.list {
		if bytes.Equal(p, q) {
			return true
		}
	}
	return false
}

// sendWideTone sends freq Hz as the browser's microphone, Opus encoded
// from 48 kHz as browsers do, and records every payload sent.
func (b *browser) sendWideTone(freq float64) (stop func(), sent *sentPayloads) {
	b.t.Helper()
	sent = &sentPayloads{}
	tone := audiotest.Tone(48000, freq, 0.5, time.Second)
	rec := audiotest.NewPayloadRecorder(transcode.OpusClockRate)
	enc, err := transcode.NewOpusEncoder(rec, 48000, transcode.OpusConfig{Bitrate: 32000})
	if err != nil {
		b.t.Fatalf("browser encoder: %v", err)
	}
	pos := 0
	stop = b.sendPayloads(func() []byte {
		if pos+960 > len(tone) {
			pos = 0 // one second holds a whole number of periods
		}
		if err := enc.WriteSample(tone[pos : pos+960]); err != nil {
			b.t.Errorf("browser encode: %v", err)
		}
		pos += 960
		ps := rec.Payloads()
		p := ps[len(ps)-1]
		sent.add(p)
		return p
	})
	return stop, sent
}

// heardWideMore is heardMore at 48 kHz.
func heardWideMore(t *testing.T, what string, rec *audiotest.Recorder, d time.Duration) transcode.PCM16 {
	t.Helper()
	start := len(rec.Samples()) + audiotest.Samples(48000, settle)
	n := audiotest.Samples(48000, d)
	eventually(t, what, func() bool { return len(rec.Samples()) >= start+n })
	return rec.Samples()[start : start+n]
}

// assertWideTone checks that s, at 48 kHz, peaks at freq Hz at a good
// level; like checkTone, on medians over 100 ms blocks.
func assertWideTone(t *testing.T, what string, s transcode.PCM16, freq float64) {
	t.Helper()
	f := audiotest.PeakFrequency(s, 48000)
	var levels []float64
	for i := 0; i+4800 <= len(s); i += 4800 {
		levels = append(levels, audiotest.GoertzelLevel(s[i:i+4800], 48000, freq))
	}
	lvl := median(levels)
	t.Logf("%s: peak %.1f Hz, median %.1f dBFS at %.0f Hz", what, f, lvl, freq)
	if d := f - freq; d < -15 || d > 15 {
		t.Errorf("%s: peak at %.1f Hz, want %.0f Hz", what, f, freq)
	}
	if lvl < -12 || lvl > 0 {
		t.Errorf("%s: %.1f dBFS at %.0f Hz, want between -12 and 0 (a 0.5 tone is -6)", what, lvl, freq)
	}
}

// TestRelayAudioIsWideband relays each browser's Opus to the other: a
// 6 kHz tone, which the 8 kHz transcoding path cannot carry, arrives at
// 6 kHz and at its level, in packets whose payloads are those sent.
func TestRelayAudioIsWideband(t *testing.T) {
	e := newTestEngine(t, Config{})
	ba, bb := newBrowser(t, browserOptions{}), newBrowser(t, browserOptions{})
	pa, pb := connect(t, e, ba, PeerOptions{Name: "customer"}), connect(t, e, bb, PeerOptions{Name: "console"})
	// The transcoding path stays wired as the fallback, as the gateway
	// does; while the relay runs it must get nothing.
	fallbackA, fallbackB := audiotest.NewRecorder(8000), audiotest.NewRecorder(8000)
	pa.SwapAudioOut(fallbackA)
	pb.SwapAudioOut(fallbackB)
	if err := pa.RelayAudioTo(pb.Peer); err != nil {
		t.Fatal(err)
	}
	if err := pb.RelayAudioTo(pa.Peer); err != nil {
		t.Fatal(err)
	}
	stopA, sentA := ba.sendWideTone(wideHz)
	defer stopA()
	stopB, sentB := bb.sendWideTone(2500)
	defer stopB()

	assertWideTone(t, "console heard", heardWideMore(t, "relayed audio at the console", bb.heardWide, time.Second), wideHz)
	assertWideTone(t, "customer heard", heardWideMore(t, "relayed audio at the customer", ba.heardWide, time.Second), 2500)

	// Untouched: the latest packets carry what the other browser sent.
	for _, c := range []struct {
		who  string
		got  []audioPacket
		sent *sentPayloads
	}{{"console", bb.receivedAudio(), sentA}, {"customer", ba.receivedAudio(), sentB}} {
		last := c.got[len(c.got)-25:]
		for _, p := range last {
			if !c.sent.has(p.payload) {
				t.Errorf("%s received a payload that was not sent (%d bytes, seq %d)", c.who, len(p.payload), p.seq)
				break
			}
		}
	}

	// Both ends count the relay, the sender's audio still counts as
	// flowing, and nothing was decoded meanwhile.
	fa, fb := fallbackA.Frames(), fallbackB.Frames()
	time.Sleep(500 * time.Millisecond)
	if n, m := fallbackA.Frames(), fallbackB.Frames(); n != fa || m != fb {
		t.Errorf("the transcoding path got %d and %d frames while relaying", n-fa, m-fb)
	}
	sa, sb := pa.Stats(), pb.Stats()
	if sa.Inbound.Relayed == 0 || sb.Outbound.Relayed == 0 || sb.Inbound.Relayed == 0 || sa.Outbound.Relayed == 0 {
		t.Errorf("relay counters: customer %+v, console %+v", sa, sb)
	}
	if sa.Inbound.Relayed > sa.Inbound.Packets || !pa.AudioFlowing() || !sa.Flowing {
		t.Errorf("customer's inbound while relaying: %+v, flowing %v", sa.Inbound, pa.AudioFlowing())
	}
}

// TestRelayAudioSwitchKeepsTheStream moves the console's audio between
// relayed packets and its own transcoded audio (AudioIn, then DTMF
// feedback) and back: the console's browser sees one stream, one SSRC,
// sequence numbers that neither skip nor go back at each switch, and
// timestamps that only increase.
func TestRelayAudioSwitchKeepsTheStream(t *testing.T) {
	e := newTestEngine(t, Config{})
	ba, bb := newBrowser(t, browserOptions{}), newBrowser(t, browserOptions{})
	pa, pb := connect(t, e, ba, PeerOptions{Name: "customer"}), connect(t, e, bb, PeerOptions{Name: "console"})
	stopA, sentA := ba.sendWideTone(wideHz)
	defer stopA()

	// Transcoded first: the phone, say, playing into the console's peer.
	stopTone := playTone(t, pb.AudioIn(), 440)
	assertToneLoose(t, "transcoded", heardMore(t, "transcoded audio", bb.heard, 500*time.Millisecond), 440)
	// Relayed.
	stopTone()
	if err := pa.RelayAudioTo(pb.Peer); err != nil {
		t.Fatal(err)
	}
	assertWideTone(t, "relayed", heardWideMore(t, "relayed audio", bb.heardWide, 500*time.Millisecond), wideHz)
	// A prompt in the middle of the relay.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := pb.SendDTMF(ctx, "5"); err != nil {
		t.Fatal(err)
	}
	assertWideTone(t, "relayed after the prompt", heardWideMore(t, "relayed audio after the prompt", bb.heardWide, 500*time.Millisecond), wideHz)
	// Transcoded again.
	if err := pa.RelayAudioTo(nil); err != nil {
		t.Fatal(err)
	}
	stopTone = playTone(t, pb.AudioIn(), 440)
	assertToneLoose(t, "transcoded again", heardMore(t, "transcoded audio again", bb.heard, 500*time.Millisecond), 440)
	stopTone()
	// And relayed once more.
	if err := pa.RelayAudioTo(pb.Peer); err != nil {
		t.Fatal(err)
	}
	assertWideTone(t, "relayed again", heardWideMore(t, "relayed audio again", bb.heardWide, 500*time.Millisecond), wideHz)

	got := bb.receivedAudio()
	switches := 0
	for i := 1; i < len(got); i++ {
		prev, p := got[i-1], got[i]
		if p.ssrc != prev.ssrc {
			t.Fatalf("packet %d: SSRC %d after %d", i, p.ssrc, prev.ssrc)
		}
		dseq := p.seq - prev.seq
		if int16(dseq) <= 0 {
			t.Errorf("packet %d: sequence number %d after %d", i, p.seq, prev.seq)
		}
		if int32(p.ts-prev.ts) <= 0 {
			t.Errorf("packet %d: timestamp %d after %d", i, p.ts, prev.ts)
		}
		if sentA.has(p.payload) == sentA.has(prev.payload) {
			continue
		}
		switches++
		if dseq != 1 {
			t.Errorf("switch at packet %d: sequence number %d after %d", i, p.seq, prev.seq)
		}
		if !p.marker {
			t.Errorf("switch at packet %d: no marker bit", i)
		}
		if d := p.ts - prev.ts; d > 48000 {
			t.Errorf("switch at packet %d: timestamp jumps %d (%.2f s)", i, d, float64(d)/48000)
		}
	}
	// Transcoded → relayed → prompt → relayed → transcoded → relayed.
	if switches < 5 {
		t.Errorf("%d switches between relayed and transcoded packets, want 5", switches)
	}
}

// TestRelayAudioFallsBackWithG711: a browser that negotiated PCMU cannot
// take Opus packets nor send them, so each direction goes through the
// transcoding path, wired as the fallback, and is heard all the same.
func TestRelayAudioFallsBackWithG711(t *testing.T) {
	pcmu := pwebrtc.RTPCodecParameters{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0}
	opus := pwebrtc.RTPCodecParameters{RTPCodecCapability: opusCap, PayloadType: 111}
	e := newTestEngine(t, Config{Transcode: "auto"})
	ba := newBrowser(t, browserOptions{audioCodecs: []pwebrtc.RTPCodecParameters{pcmu, opus}, sendCodec: pcmu.RTPCodecCapability})
	bb := newBrowser(t, browserOptions{})
	pa, pb := connect(t, e, ba, PeerOptions{Name: "customer"}), connect(t, e, bb, PeerOptions{Name: "console"})
	pa.SwapAudioOut(noCloseWriter{pb.AudioIn()})
	pb.SwapAudioOut(noCloseWriter{pa.AudioIn()})
	if err := pa.RelayAudioTo(pb.Peer); err != nil {
		t.Fatal(err)
	}
	if err := pb.RelayAudioTo(pa.Peer); err != nil {
		t.Fatal(err)
	}
	defer ba.sendTone(1000)()
	defer bb.sendTone(440)()

	assertToneLoose(t, "console heard the PCMU customer", heardMore(t, "customer audio", bb.heard, time.Second), 1000)
	assertToneLoose(t, "PCMU customer heard the console", heardMore(t, "console audio", ba.heard, time.Second), 440)
	if c := pa.AudioCodec(); c != "PCMU" {
		t.Errorf("customer codec %q, want PCMU", c)
	}
	sa, sb := pa.Stats(), pb.Stats()
	if sa.Inbound.Relayed != 0 || sb.Inbound.Relayed != 0 || sa.Outbound.Relayed != 0 || sb.Outbound.Relayed != 0 {
		t.Errorf("packets relayed with PCMU on one side: customer %+v, console %+v", sa, sb)
	}

	if err := pa.RelayAudioTo(pa.Peer); !errors.Is(err, ErrRelayToSelf) {
		t.Errorf("RelayAudioTo(itself) = %v, want ErrRelayToSelf", err)
	}
	if err := pb.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pa.RelayAudioTo(pb.Peer); !errors.Is(err, ErrClosed) {
		t.Errorf("RelayAudioTo(a closed peer) = %v, want ErrClosed", err)
	}
}

// noCloseWriter hands a peer's AudioIn to another peer without letting it
// be closed.
type noCloseWriter struct{ transcode.PCMWriter }

func (noCloseWriter) Close() error { return nil }

// recordRTP is a TrackLocalWriter that keeps what it is given.
type recordRTP struct {
	hdrs     []rtp.Header
	payloads [][]byte
}

func (r *recordRTP) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	r.hdrs = append(r.hdrs, *h)
	r.payloads = append(r.payloads, append([]byte(nil), payload...))
	return h.MarshalSize() + len(payload), nil
}
func (r *recordRTP) Write(b []byte) (int, error) { return len(b), nil }

// TestRelayMapping follows the sequence numbers and timestamps of relayed
// packets on the destination's track, without a network: the switch from
// the peer's own audio, loss, reordering, a packet from before the
// switch, the 16-bit wrap, a new source SSRC, jumps either way, the peer's
// own audio taking over and giving way.
func TestRelayMapping(t *testing.T) {
	dst, _ := benchPeer(t)
	out := &recordRTP{}
	tx, err := dst.newTx(benchCodecs[0].params, 77, out)
	if err != nil {
		t.Fatal(err)
	}
	dst.tx.Store(tx)
	pcm, silence := make(transcode.PCM16, frameSamples), make(transcode.PCM16, frameSamples)
	// The peer's own audio first: two frames, sent on its media clock.
	_ = dst.in.WriteSample(make(transcode.PCM16, 2*frameSamples))
	dst.sendTick(pcm, silence)
	dst.sendTick(pcm, silence)
	if len(out.hdrs) != 2 {
		t.Fatalf("%d packets after two ticks with audio", len(out.hdrs))
	}
	own := out.hdrs[1]

	relay := func(ssrc uint32, seq uint16, ts uint32) bool {
		t.Helper()
		return dst.relayIn(tx, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: ssrc, SequenceNumber: seq, Timestamp: ts}, Payload: []byte{byte(seq), 1, 2}})
	}
	last := func() rtp.Header { return out.hdrs[len(out.hdrs)-1] }
	// later is the later of two RTP timestamps, across the 32-bit wrap.
	later := func(a, b uint32) uint32 {
		if int32(a-b) > 0 {
			return a
		}
		return b
	}
	expect := func(what string, sent bool, seq uint16, ts uint32, marker bool) {
		t.Helper()
		h := last()
		if !sent || h.SequenceNumber != seq || h.Timestamp != ts || h.Marker != marker || h.SSRC != 77 || h.PayloadType != 111 {
			t.Fatalf("%s: sent %v, seq %d ts %d marker %v ssrc %d pt %d; want seq %d ts %d marker %v", what, sent, h.SequenceNumber, h.Timestamp, h.Marker, h.SSRC, h.PayloadType, seq, ts, marker)
		}
	}

	// The peer's own audio plays: relayed packets give way.
	if relay(5, 100, 48000) {
		t.Fatal("a relayed packet went out while the peer's own audio plays")
	}
	for range relayYield {
		dst.sendTick(pcm, silence) // silence padding
	}
	base := own.SequenceNumber + 1 + relayYield
	tsBase := own.Timestamp + (1+relayYield)*960
	expect("the last padding", true, base-1, tsBase-960, false)
	expect("first relayed", relay(5, 100, 48000), base, tsBase, true)
	dst.sendTick(pcm, silence) // the relay carries the stream: no padding
	expect("after a tick", true, base, tsBase, true)
	expect("next", relay(5, 101, 48960), base+1, tsBase+960, false)
	expect("after a loss", relay(5, 103, 50880), base+3, tsBase+2880, false)
	expect("reordered", relay(5, 102, 49920), base+2, tsBase+1920, false)
	if relay(5, 99, 47040) {
		t.Error("a packet from before the switch went out")
	}
	// Long enough to wrap the 16-bit sequence numbers.
	seq, ts := uint16(104), uint32(51840)
	for range 70000 {
		if !relay(5, seq, ts) {
			t.Fatalf("packet %d not relayed", seq)
		}
		seq, ts = seq+1, ts+960
	}
	next := last().SequenceNumber + 1
	nextTS := last().Timestamp
	// A new source stream, then a jump ahead: each carries on.
	expect("new SSRC", relay(6, 9, 1), next, later(nextTS+960, tx.ts), true)
	next, nextTS = next+1, last().Timestamp
	expect("jump ahead", relay(6, 5000, 500000), next, later(nextTS+960, tx.ts), true)
	next, nextTS = next+1, last().Timestamp
	// Far behind: dropped, unless it lasts.
	for i := range relayLateRestart - 1 {
		if relay(6, 1000+uint16(i), 1000) {
			t.Fatal("a packet far behind the stream went out")
		}
	}
	expect("moved back", relay(6, 1010, 2000), next, later(nextTS+960, tx.ts), true)
	next, nextTS = next+1, last().Timestamp

	// The peer's own audio again: its numbers carry on after the relay.
	_ = dst.in.WriteSample(make(transcode.PCM16, 2*frameSamples))
	dst.sendTick(pcm, silence)
	expect("own audio after the relay", true, next, nextTS+960, true)
	if relay(6, 1011, 2960) {
		t.Error("a relayed packet went out right after the peer's own audio")
	}
	if got := dst.Stats().Outbound; got.Relayed != uint64(len(out.hdrs))-3-relayYield || got.Packets != uint64(len(out.hdrs)) {
		t.Errorf("outbound stats %+v for %d packets", got, len(out.hdrs))
	}
}
