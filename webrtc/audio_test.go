package webrtc

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// heardMore waits until rec holds d more audio than it does now, past a
// first half second left for the stream to settle (a tone just started,
// a renegotiation just applied, a machine busy with other builds), and
// returns those d.
func heardMore(t *testing.T, what string, rec *audiotest.Recorder, d time.Duration) transcode.PCM16 {
	t.Helper()
	start := len(rec.Samples()) + audiotest.Samples(8000, settle)
	n := audiotest.Samples(8000, d)
	eventually(t, what, func() bool { return len(rec.Samples()) >= start+n })
	return rec.Samples()[start : start+n]
}

// settle is the audio heardMore skips before measuring.
const settle = 500 * time.Millisecond

func TestG711FromBrowser(t *testing.T) {
	pcmu := pwebrtc.RTPCodecParameters{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: 0}
	pcma := pwebrtc.RTPCodecParameters{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypePCMA, ClockRate: 8000}, PayloadType: 8}
	opus := pwebrtc.RTPCodecParameters{RTPCodecCapability: opusCap, PayloadType: 111}
	tests := []struct {
		name      string
		transcode string
		offer     []pwebrtc.RTPCodecParameters
		mic       pwebrtc.RTPCodecCapability
		want      string
	}{
		{"pcmu first, auto", "auto", []pwebrtc.RTPCodecParameters{pcmu, opus}, pcmu.RTPCodecCapability, "PCMU"},
		{"pcma first, auto", "auto", []pwebrtc.RTPCodecParameters{pcma, pcmu, opus}, pcma.RTPCodecCapability, "PCMA"},
		{"pcmu first, always", "always", []pwebrtc.RTPCodecParameters{pcmu, opus}, opusCap, "opus"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, Config{Transcode: tc.transcode})
			b := newBrowser(t, browserOptions{audioCodecs: tc.offer, sendCodec: tc.mic})
			p := connect(t, e, b, PeerOptions{})
			heard := audiotest.NewRecorder(8000)
			p.SwapAudioOut(heard)
			defer b.sendTone(1000)()
			defer playTone(t, p.AudioIn(), 440)()

			assertTone(t, "gateway heard", heardMore(t, "browser audio", heard, time.Second), 1000)
			assertTone(t, "browser heard", heardMore(t, "gateway audio", b.heard, time.Second), 440)
			if c := p.AudioCodec(); c != tc.want {
				t.Errorf("AudioCodec = %q, want %q", c, tc.want)
			}
			b.mu.Lock()
			got := b.codec
			b.mu.Unlock()
			if got != tc.want {
				t.Errorf("browser received %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRenegotiation has the browser offer again (as when it adds a
// camera) and restart ICE (as when its network changes), and checks that
// the audio goes on after each.
func TestRenegotiation(t *testing.T) {
	e := newTestEngine(t, Config{})
	b := newBrowser(t, browserOptions{})
	var needed atomic.Int32
	p := connect(t, e, b, PeerOptions{OnNegotiationNeeded: func() { needed.Add(1) }})
	heard := audiotest.NewRecorder(8000)
	p.SwapAudioOut(heard)
	defer b.sendTone(1000)()
	defer playTone(t, p.AudioIn(), 440)()
	assertTone(t, "before", heardMore(t, "audio", heard, 500*time.Millisecond), 1000)

	// A plain re-offer, with an added video section.
	if _, err := b.pc.AddTransceiverFromKind(pwebrtc.RTPCodecTypeVideo, pwebrtc.RTPTransceiverInit{Direction: pwebrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	b.negotiate(p.Peer, nil)
	assertTone(t, "after re-offer", heardMore(t, "audio after re-offer", heard, time.Second), 1000)
	assertTone(t, "browser after re-offer", heardMore(t, "audio at browser after re-offer", b.heard, time.Second), 440)

	// An ICE restart: new credentials on both sides.
	oldUfrag := ufrag(p.pc.LocalDescription().SDP)
	b.negotiate(p.Peer, &pwebrtc.OfferOptions{ICERestart: true})
	if nu := ufrag(p.pc.LocalDescription().SDP); nu == oldUfrag || nu == "" {
		t.Errorf("answer to an ICE restart kept ufrag %q", nu)
	}
	assertTone(t, "after ice restart", heardMore(t, "audio after ICE restart", heard, time.Second), 1000)
	assertTone(t, "browser after ice restart", heardMore(t, "audio at browser after ICE restart", b.heard, time.Second), 440)
	if err := p.Err(); err != nil {
		t.Errorf("Err = %v after renegotiation", err)
	}
	// Browser-made changes must not make the gateway offer back.
	if n := needed.Load(); n != 0 {
		t.Errorf("OnNegotiationNeeded called %d times after browser offers", n)
	}
}

func ufrag(sdp string) string {
	for _, l := range strings.Split(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

// TestServerOffer has the gateway make the offer (server-initiated
// renegotiation) after the browser's first one.
func TestServerOffer(t *testing.T) {
	e := newTestEngine(t, Config{})
	b := newBrowser(t, browserOptions{})
	p := connect(t, e, b, PeerOptions{})
	heard := audiotest.NewRecorder(8000)
	p.SwapAudioOut(heard)
	defer b.sendTone(1000)()

	ctx := context.Background()
	if o := p.LocalOffer(); o != "" {
		t.Fatalf("LocalOffer with no offer out = %q, want none", o)
	}
	for _, restart := range []bool{false, true} {
		offer, err := p.Offer(ctx, restart)
		if err != nil {
			t.Fatalf("Offer: %v", err)
		}
		// The offer waiting for its answer can be sent again as it is.
		if again := p.LocalOffer(); ufrag(again) != ufrag(offer) || again == "" {
			t.Fatalf("LocalOffer while the offer waits: ufrag %q, want the offer's %q", ufrag(again), ufrag(offer))
		}
		b.setRemote(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeOffer, SDP: offer})
		answer, err := b.pc.CreateAnswer(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.pc.SetLocalDescription(answer); err != nil {
			t.Fatal(err)
		}
		if err := p.SetAnswer(ctx, b.pc.LocalDescription().SDP); err != nil {
			t.Fatalf("SetAnswer: %v", err)
		}
		if o := p.LocalOffer(); o != "" {
			t.Fatal("LocalOffer after the answer is not empty")
		}
		assertTone(t, "after server offer", heardMore(t, "audio", heard, 500*time.Millisecond), 1000)
	}

	// Glare: the gateway's offer crosses the browser's. The gateway keeps
	// its offer (pion cannot roll back); the browser, the polite peer,
	// is to roll back its own and answer.
	if _, err := p.Offer(ctx, false); err != nil {
		t.Fatalf("Offer: %v", err)
	}
	if _, err := p.Answer(ctx, b.offer(nil)); !errors.Is(err, ErrGlare) {
		t.Errorf("Answer during the gateway's offer = %v, want ErrGlare", err)
	}
	assertTone(t, "after glare", heardMore(t, "audio", heard, 500*time.Millisecond), 1000)
}

func TestBadSignalling(t *testing.T) {
	e := newTestEngine(t, Config{})
	p, err := e.NewPeer(context.Background(), PeerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	if _, err := p.Answer(ctx, "v=0\r\nnonsense"); !errors.Is(err, ErrBadSDP) {
		t.Errorf("Answer(garbage) = %v, want ErrBadSDP", err)
	}
	if err := p.SetAnswer(ctx, "v=0\r\n"); !errors.Is(err, ErrBadSDP) {
		t.Errorf("SetAnswer without an offer = %v, want ErrBadSDP", err)
	}
	// A candidate before any description is kept, not refused.
	if err := p.AddICECandidate(ICECandidateInit{Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host"}); err != nil {
		t.Errorf("early AddICECandidate = %v", err)
	}
	b := newBrowser(t, browserOptions{})
	b.negotiate(p, nil)
	if err := p.AddICECandidate(ICECandidateInit{Candidate: "candidate:garbage"}); !errors.Is(err, ErrBadCandidate) {
		t.Errorf("AddICECandidate(garbage) = %v, want ErrBadCandidate", err)
	}
	if err := p.SendDTMF(ctx, "1x"); !errors.Is(err, transcode.ErrUnknownDigit) && !errors.Is(err, ErrNoAudio) {
		t.Errorf("SendDTMF(1x) = %v, want ErrUnknownDigit or ErrNoAudio", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := p.Answer(ctx, b.offer(nil)); !errors.Is(err, ErrClosed) {
		t.Errorf("Answer after Close = %v, want ErrClosed", err)
	}
	if err := p.AddICECandidate(ICECandidateInit{}); !errors.Is(err, ErrClosed) {
		t.Errorf("AddICECandidate after Close = %v, want ErrClosed", err)
	}
}

// TestDTMF checks digits both ways: RFC 4733 events from the browser reach
// OnDTMF once each, and SendDTMF plays in-band tones the browser hears.
func TestDTMF(t *testing.T) {
	e := newTestEngine(t, Config{})
	te := pwebrtc.RTPCodecParameters{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: mimeTelephoneEvent, ClockRate: 48000, SDPFmtpLine: "0-15"}, PayloadType: 101}
	b := newBrowser(t, browserOptions{audioCodecs: []pwebrtc.RTPCodecParameters{{RTPCodecCapability: opusCap, PayloadType: 111}, te}})
	p := connect(t, e, b, PeerOptions{})

	pt, ok := b.audio.payloadType(mimeTelephoneEvent, 48000)
	if !ok {
		t.Fatal("telephone-event not negotiated")
	}
	// RFC 4733 §2.5.1: a start packet, continuations, three end packets,
	// one event after the other.
	seq := uint16(100)
	for i, d := range "5#" {
		code, _ := transcode.DTMFCode(d)
		ts := uint32(1000 + i*48000)
		for j := range 6 {
			ev := transcode.DTMFEvent{Event: code, Volume: 10, Duration: uint16((j + 1) * 960), End: j >= 3}
			pl := ev.Marshal()
			if err := b.audio.write(rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, Marker: j == 0}, pl[:]); err != nil {
				t.Fatal(err)
			}
			seq++
			time.Sleep(frameDur)
		}
	}
	var got []rune
	timeout := time.After(wait)
	for len(got) < 2 {
		select {
		case d := <-p.digits:
			got = append(got, d)
		case <-timeout:
			t.Fatalf("digits received: %q, want \"5#\"", string(got))
		}
	}
	if string(got) != "5#" {
		t.Errorf("digits = %q, want \"5#\"", string(got))
	}

	start := len(b.heard.Samples())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.SendDTMF(ctx, "1"); err != nil {
		t.Fatalf("SendDTMF: %v", err)
	}
	eventually(t, "dtmf audio at the browser", func() bool { return len(b.heard.Samples()) >= start+1600 })
	det, err := transcode.NewDTMFDetector(8000)
	if err != nil {
		t.Fatal(err)
	}
	if digits := det.Detect(b.heard.Samples()[start:], nil); string(digits) != "1" {
		t.Errorf("browser heard digits %q, want \"1\"", string(digits))
	}
}

// TestMalformedAudio sends garbage as Opus payloads, then a real tone: the
// peer must survive, count the bad packets and play the tone.
func TestMalformedAudio(t *testing.T) {
	e := newTestEngine(t, Config{})
	b := newBrowser(t, browserOptions{})
	p := connect(t, e, b, PeerOptions{})
	heard := audiotest.NewRecorder(8000)
	p.SwapAudioOut(heard)

	rng := rand.New(rand.NewPCG(1, 2))
	sent := 0
	stop := b.sendPayloads(func() []byte {
		if sent++; sent > 100 {
			return nil
		}
		payload := make([]byte, rng.IntN(300))
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
		return payload
	})
	eventually(t, "garbage sent", func() bool { return p.Stats().Inbound.Packets >= 100 })
	stop()
	if err := p.Err(); err != nil {
		t.Fatalf("peer ended on malformed payloads: %v", err)
	}
	defer b.sendTone(1000)()
	assertTone(t, "after garbage", tail(heardMore(t, "audio after garbage", heard, 1500*time.Millisecond), time.Second), 1000)
	t.Logf("stats: %+v", p.Stats().Inbound)
}

// panicWriter is a decoder stage that panics, like a codec library with a
// bug would.
type panicWriter struct{}

func (panicWriter) WriteSample([]byte) error { panic("codec bug") }
func (panicWriter) SampleRate() int          { return 48000 }
func (panicWriter) String() string           { return "panic" }
func (panicWriter) Close() error             { return nil }

// TestDecoderPanicEndsOnlyThePeer checks that a panic in the receive chain
// ends that peer with ErrMediaFailed and nothing else.
func TestDecoderPanicEndsOnlyThePeer(t *testing.T) {
	e := newTestEngine(t, Config{})
	p, err := e.NewPeer(context.Background(), PeerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	j, err := transcode.NewJitter(transcode.JitterConfig{ClockRate: 48000})
	if err != nil {
		t.Fatal(err)
	}
	p.rx.Store(&rxState{codec: "opus", pt: 111, jitter: j, dec: panicWriter{}})
	for i := range 10 {
		j.Push(&rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(i * 960), SSRC: 1}, Payload: []byte{1}})
	}
	select {
	case <-p.Done():
	case <-time.After(wait):
		t.Fatal("peer still running after a decoder panic")
	}
	if err := p.Err(); !errors.Is(err, ErrMediaFailed) {
		t.Errorf("Err = %v, want ErrMediaFailed", err)
	}
}

// dropConn is a UDP socket that can go silent, as a browser whose network
// vanished.
type dropConn struct {
	net.PacketConn
	drop atomic.Bool
}

func (c *dropConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := c.PacketConn.ReadFrom(b)
		if err != nil || !c.drop.Load() {
			return n, a, err
		}
	}
}

func (c *dropConn) WriteTo(b []byte, a net.Addr) (int, error) {
	if c.drop.Load() {
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, a)
}

// TestBrowserVanishes cuts the browser's network: the peer must go
// disconnected, then fail, and end Done with ErrICEFailed.
func TestBrowserVanishes(t *testing.T) {
	e := newTestEngine(t, Config{}, WithICETimeouts(time.Second, 2*time.Second))
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conn := &dropConn{PacketConn: udp}
	mux := pwebrtc.NewICEUDPMux(nil, conn)
	defer mux.Close()
	b := newBrowser(t, browserOptions{settings: func(se *pwebrtc.SettingEngine) { se.SetICEUDPMux(mux) }})
	p := connect(t, e, b, PeerOptions{})
	defer b.sendTone(1000)()
	eventually(t, "audio flowing", p.AudioFlowing)

	conn.drop.Store(true)
	start := time.Now()
	p.waitState(t, StateDisconnected)
	select {
	case <-p.Done():
	case <-time.After(wait):
		t.Fatalf("Done not closed %v after the network vanished; state %s", time.Since(start), p.State())
	}
	t.Logf("ended after %v: %v", time.Since(start), p.Err())
	if err := p.Err(); !errors.Is(err, ErrICEFailed) && !errors.Is(err, ErrDisconnected) {
		t.Errorf("Err = %v, want ErrICEFailed or ErrDisconnected", err)
	}
	if p.AudioFlowing() {
		t.Error("AudioFlowing still true after the network vanished")
	}
}

// TestRemoteClose checks that the browser closing its side ends the peer.
func TestRemoteClose(t *testing.T) {
	e := newTestEngine(t, Config{})
	b := newBrowser(t, browserOptions{})
	p := connect(t, e, b, PeerOptions{})
	b.close()
	select {
	case <-p.Done():
	case <-time.After(wait):
		t.Fatal("Done not closed after the browser closed")
	}
	if err := p.Err(); !errors.Is(err, ErrRemoteClosed) && !errors.Is(err, ErrICEFailed) && !errors.Is(err, ErrDisconnected) {
		t.Errorf("Err = %v, want ErrRemoteClosed", err)
	}
}

// TestAfterDone: a function given to AfterDone runs once the peer has
// ended, seeing it ended, and only once however often it is closed.
func TestAfterDone(t *testing.T) {
	e := newTestEngine(t, Config{})
	b := newBrowser(t, browserOptions{})
	p := connect(t, e, b, PeerOptions{})
	ran := make(chan error, 2)
	p.AfterDone(func() { ran <- p.Err() })
	select {
	case err := <-ran:
		t.Fatalf("ran before the peer ended (Err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	_ = p.Close()
	_ = p.Close()
	select {
	case err := <-ran:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Err seen from the function = %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not run after Close")
	}
	select {
	case <-ran:
		t.Error("ran twice")
	case <-time.After(50 * time.Millisecond):
	}
}

// TestCloseIdempotent closes a connected peer twice and from several
// goroutines; goleak in TestMain checks nothing is left running.
func TestCloseIdempotent(t *testing.T) {
	e := newTestEngine(t, Config{})
	b := newBrowser(t, browserOptions{})
	p := connect(t, e, b, PeerOptions{})
	defer b.sendTone(1000)()
	old := audiotest.NewRecorder(8000)
	p.SwapAudioOut(old)
	eventually(t, "audio flowing", p.AudioFlowing)
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- p.Close() }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if err := p.Err(); !errors.Is(err, ErrClosed) {
		t.Errorf("Err = %v, want ErrClosed", err)
	}
	if old.Closed() {
		t.Error("Close closed the writer set with SwapAudioOut")
	}
	if w := p.SwapAudioOut(nil); w != old {
		t.Errorf("SwapAudioOut(nil) after Close = %v, want the writer set before", w)
	}
	if err := p.SendDTMF(context.Background(), "1"); !errors.Is(err, ErrClosed) {
		t.Errorf("SendDTMF after Close = %v, want ErrClosed", err)
	}
}

// TestNeverConnects answers an offer whose browser then goes away before
// any candidate is exchanged: the peer must end with ErrConnectTimeout.
func TestNeverConnects(t *testing.T) {
	e := newTestEngine(t, Config{}, WithConnectTimeout(time.Second))
	b := newBrowser(t, browserOptions{})
	p, err := e.NewPeer(context.Background(), PeerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// The offer goes without its candidates, and ours are not passed on.
	offer := b.offer(nil)
	var cands []string
	for _, l := range strings.Split(offer, "\r\n") {
		if !strings.HasPrefix(l, "a=candidate:") {
			cands = append(cands, l)
		}
	}
	if _, err := p.Answer(context.Background(), strings.Join(cands, "\r\n")); err != nil {
		t.Fatalf("Answer: %v", err)
	}
	b.close()
	select {
	case <-p.Done():
	case <-time.After(wait):
		t.Fatalf("Done not closed; state %s", p.State())
	}
	if err := p.Err(); !errors.Is(err, ErrConnectTimeout) {
		t.Errorf("Err = %v, want ErrConnectTimeout", err)
	}
}

// TestLostOpusRebuiltFromFEC: the browser sends Opus and one packet in
// ten never leaves it (its sequence number is skipped). With the
// encoder's in-band FEC on, the gateway rebuilds lost frames from the
// packet after each (Stats' Recovered); without it, it can only
// extrapolate them. Either way the tone goes on.
func TestLostOpusRebuiltFromFEC(t *testing.T) {
	for _, fec := range []bool{true, false} {
		name := "without fec"
		if fec {
			name = "with fec"
		}
		t.Run(name, func(t *testing.T) {
			e := newTestEngine(t, Config{})
			b := newBrowser(t, browserOptions{})
			p := connect(t, e, b, PeerOptions{})
			heard := audiotest.NewRecorder(8000)
			p.SwapAudioOut(heard)

			rec := audiotest.NewPayloadRecorder(transcode.OpusClockRate)
			enc, err := transcode.NewOpusEncoder(rec, 8000, transcode.OpusConfig{FEC: fec, PacketLoss: 10})
			if err != nil {
				t.Fatal(err)
			}
			tone := audiotest.Tone(8000, 1000, 0.5, time.Second)
			done := make(chan struct{})
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				var seq uint16
				pos := 0
				pace(done, b.stop, func() {
					if err := enc.WriteSample(tone[pos : pos+160]); err != nil {
						t.Errorf("browser encode: %v", err)
					}
					pos = (pos + 160) % len(tone)
					ps := rec.Payloads()
					if seq%10 != 5 {
						_ = b.audio.write(rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960, Marker: seq == 0}, ps[len(ps)-1])
					}
					seq++
				})
			}()
			defer close(done)

			eventually(t, "five lost frames concealed", func() bool { return p.Stats().Inbound.Concealed >= 5 })
			assertToneLoose(t, "gateway heard", heardMore(t, "browser audio", heard, time.Second), 1000)
			in := p.Stats().Inbound
			if in.Recovered > in.Concealed {
				t.Errorf("%d frames recovered from FEC, more than the %d concealed", in.Recovered, in.Concealed)
			}
			if fec && in.Recovered == 0 {
				t.Errorf("none of %d concealed frames recovered from FEC", in.Concealed)
			}
			if !fec && in.Recovered != 0 {
				t.Errorf("%d frames recovered from FEC the browser did not send", in.Recovered)
			}
			t.Logf("%d packets lost, %d frames concealed, %d of them from FEC", in.Lost, in.Concealed, in.Recovered)
		})
	}
}
