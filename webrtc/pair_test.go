package webrtc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// wait is the generous bound of every wait in these tests: nothing here
// should take more than a few seconds, even on a loaded machine.
const wait = 30 * time.Second

func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("WEBRTC_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	w := &testWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// testWriter writes log lines to the test log until the test ends: pion
// may still log from a goroutine that is winding down.
type testWriter struct {
	t    testing.TB
	done atomic.Bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimSpace(string(b)))
	}
	return len(b), nil
}

func newTestEngine(t testing.TB, cfg Config, opts ...Option) *Engine {
	t.Helper()
	opts = append([]Option{WithLoopbackOnly(), WithICETimeouts(2*time.Second, 3*time.Second)}, opts...)
	e, err := New(cfg, testLogger(t), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// browser plays the customer's browser: a plain pion peer connection with
// pion's default codecs and interceptors, over loopback only.
type browser struct {
	t  testing.TB
	pc *pwebrtc.PeerConnection

	audio  *rawTrack
	sender *pwebrtc.RTPSender

	mu      sync.Mutex
	pending []pwebrtc.ICECandidateInit
	// negotiating holds candidates from the gateway until its answer is
	// applied, as a careful widget does.
	negotiating bool
	heard       *audiotest.Recorder // what the browser received, decoded to 8 kHz
	heardWide   *audiotest.Recorder // and Opus decoded to 48 kHz
	audioIn     []audioPacket       // the audio packets received, in order
	video       [][]byte            // payloads of the video it received
	videoSeq    []uint16            // and their sequence numbers
	codec       string
	tracks      []*pwebrtc.TrackRemote

	wg     sync.WaitGroup
	stop   chan struct{}
	closed atomic.Bool
}

type browserOptions struct {
	// audioCodecs, when set, replaces pion's default audio codecs, in
	// order of preference.
	audioCodecs []pwebrtc.RTPCodecParameters
	// sendCodec is the codec of the browser's microphone track.
	sendCodec pwebrtc.RTPCodecCapability
	// settings adjusts the SettingEngine.
	settings func(*pwebrtc.SettingEngine)
	noAudio  bool
	// sendOnlyFeedback leaves out pion's NACK generator and transport-wide
	// feedback sender (the browser asks for nothing), and puts
	// transport-wide sequence numbers on what it sends, as Chrome does.
	sendOnlyFeedback bool
}

var opusCap = pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}

func newBrowser(t testing.TB, o browserOptions) *browser {
	t.Helper()
	me := &pwebrtc.MediaEngine{}
	if o.audioCodecs != nil {
		for _, c := range o.audioCodecs {
			if err := me.RegisterCodec(c, pwebrtc.RTPCodecTypeAudio); err != nil {
				t.Fatal(err)
			}
		}
		if err := registerCodecs(&pwebrtc.MediaEngine{}, false); err != nil { // keep registerCodecs honest
			t.Fatal(err)
		}
		for _, c := range []pwebrtc.RTPCodecParameters{
			{RTPCodecCapability: pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96},
		} {
			if err := me.RegisterCodec(c, pwebrtc.RTPCodecTypeVideo); err != nil {
				t.Fatal(err)
			}
		}
	} else if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	reg := &interceptor.Registry{}
	if o.sendOnlyFeedback {
		responder, err := nack.NewResponderInterceptor()
		if err != nil {
			t.Fatal(err)
		}
		reg.Add(responder)
		me.RegisterFeedback(pwebrtc.RTCPFeedback{Type: pwebrtc.TypeRTCPFBNACK}, pwebrtc.RTPCodecTypeVideo)
		me.RegisterFeedback(pwebrtc.RTCPFeedback{Type: pwebrtc.TypeRTCPFBNACK, Parameter: "pli"}, pwebrtc.RTPCodecTypeVideo)
		me.RegisterFeedback(pwebrtc.RTCPFeedback{Type: pwebrtc.TypeRTCPFBTransportCC}, pwebrtc.RTPCodecTypeVideo)
		if err := pwebrtc.ConfigureRTCPReports(reg); err != nil {
			t.Fatal(err)
		}
		if err := pwebrtc.ConfigureTWCCHeaderExtensionSender(me, reg); err != nil {
			t.Fatal(err)
		}
	} else if err := pwebrtc.RegisterDefaultInterceptors(me, reg); err != nil {
		t.Fatal(err)
	}
	se := pwebrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetRemoteIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]pwebrtc.NetworkType{pwebrtc.NetworkTypeUDP4})
	se.SetICETimeouts(2*time.Second, 3*time.Second, time.Second)
	if o.settings != nil {
		o.settings(&se)
	}
	api := pwebrtc.NewAPI(pwebrtc.WithMediaEngine(me), pwebrtc.WithInterceptorRegistry(reg), pwebrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, pc: pc, heard: audiotest.NewRecorder(8000), heardWide: audiotest.NewRecorder(48000), stop: make(chan struct{})}
	if !o.noAudio {
		c := o.sendCodec
		if c.MimeType == "" {
			c = opusCap
		}
		b.audio = &rawTrack{cap: c}
		if b.sender, err = pc.AddTrack(b.audio); err != nil {
			t.Fatal(err)
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for {
				if _, _, err := b.sender.ReadRTCP(); err != nil {
					return
				}
			}
		}()
	}
	pc.OnTrack(func(tr *pwebrtc.TrackRemote, recv *pwebrtc.RTPReceiver) {
		b.mu.Lock()
		b.tracks = append(b.tracks, tr)
		b.mu.Unlock()
		// Reading the receiver's RTCP lets pion see our sender reports,
		// as a browser does, so its receiver reports carry LSR/DLSR.
		b.wg.Add(2)
		go func() {
			defer b.wg.Done()
			drainRTCP(recv)
		}()
		if tr.Kind() == pwebrtc.RTPCodecTypeVideo {
			go func() {
				defer b.wg.Done()
				for {
					pkt, _, err := tr.ReadRTP()
					if err != nil {
						return
					}
					b.mu.Lock()
					b.video = append(b.video, pkt.Payload)
					b.videoSeq = append(b.videoSeq, pkt.SequenceNumber)
					b.mu.Unlock()
				}
			}()
			return
		}
		go func() {
			defer b.wg.Done()
			b.receiveAudio(tr)
		}()
	})
	t.Cleanup(b.close)
	return b
}

// receiveAudio decodes the gateway's audio, in arrival order (loopback
// does not reorder), into heard.
func (b *browser) receiveAudio(tr *pwebrtc.TrackRemote) {
	name := codecName(tr.Codec().MimeType)
	b.mu.Lock()
	b.codec = name
	b.mu.Unlock()
	var dec, wide transcode.BytesWriter
	var err error
	switch name {
	case "opus":
		dec, err = transcode.NewOpusDecoder(b.heard)
		if err == nil {
			wide, err = transcode.NewOpusDecoder(b.heardWide)
		}
	case "PCMU":
		dec, err = transcode.NewULawDecoder(b.heard)
	case "PCMA":
		dec, err = transcode.NewALawDecoder(b.heard)
	default:
		err = fmt.Errorf("codec %s", tr.Codec().MimeType)
	}
	if err != nil {
		b.t.Errorf("browser decoder: %v", err)
		return
	}
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		if int(pkt.PayloadType) != int(tr.PayloadType()) {
			continue
		}
		b.mu.Lock()
		b.audioIn = append(b.audioIn, audioPacket{ssrc: pkt.SSRC, seq: pkt.SequenceNumber, ts: pkt.Timestamp, marker: pkt.Marker, payload: pkt.Payload})
		b.mu.Unlock()
		if err := dec.WriteSample(pkt.Payload); err != nil {
			b.t.Errorf("browser decode: %v", err)
		}
		if wide != nil {
			if err := wide.WriteSample(pkt.Payload); err != nil {
				b.t.Errorf("browser decode at 48 kHz: %v", err)
			}
		}
	}
}

// audioPacket is an audio packet a browser received.
type audioPacket struct {
	ssrc    uint32
	seq     uint16
	ts      uint32
	marker  bool
	payload []byte
}

// receivedAudio returns the audio packets received so far.
func (b *browser) receivedAudio() []audioPacket {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]audioPacket(nil), b.audioIn...)
}

func (b *browser) close() {
	if b.closed.Swap(true) {
		return
	}
	close(b.stop)
	if err := b.pc.GracefulClose(); err != nil {
		b.t.Errorf("browser close: %v", err)
	}
	b.wg.Wait()
}

// addCandidate adds a candidate from the gateway, keeping it until the
// remote description is set.
func (b *browser) addCandidate(c ICECandidateInit) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pc.RemoteDescription() == nil || b.negotiating {
		b.pending = append(b.pending, c.toPion())
		return
	}
	if err := b.pc.AddICECandidate(c.toPion()); err != nil && !b.closed.Load() {
		b.t.Errorf("browser AddICECandidate(%q): %v", c.Candidate, err)
	}
}

func (b *browser) setRemote(d pwebrtc.SessionDescription) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.negotiating = false
	if err := b.pc.SetRemoteDescription(d); err != nil {
		b.t.Fatalf("browser SetRemoteDescription: %v", err)
	}
	for _, c := range b.pending {
		if err := b.pc.AddICECandidate(c); err != nil {
			b.t.Errorf("browser AddICECandidate: %v", err)
		}
	}
	b.pending = nil
}

// offer creates and applies the browser's offer.
func (b *browser) offer(opts *pwebrtc.OfferOptions) string {
	b.t.Helper()
	o, err := b.pc.CreateOffer(opts)
	if err != nil {
		b.t.Fatalf("browser CreateOffer: %v", err)
	}
	if err := b.pc.SetLocalDescription(o); err != nil {
		b.t.Fatalf("browser SetLocalDescription: %v", err)
	}
	return b.pc.LocalDescription().SDP
}

// negotiate runs one browser-initiated offer/answer with p.
func (b *browser) negotiate(p *Peer, opts *pwebrtc.OfferOptions) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	b.mu.Lock()
	b.negotiating = true
	b.mu.Unlock()
	answer, err := p.Answer(ctx, b.offer(opts))
	if err != nil {
		b.t.Fatalf("Answer: %v", err)
	}
	b.setRemote(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: answer})
}

// sendTone sends freq Hz as the browser's microphone, encoded like a
// browser does (Opus at 48 kHz, or G.711), on a 20 ms clock until stop.
func (b *browser) sendTone(freq float64) (stop func()) {
	codec := codecName(b.audio.cap.MimeType)
	return b.sendPayloads(func() func() []byte {
		rate := 48000
		if codec != "opus" {
			rate = 8000
		}
		tone := audiotest.Tone(rate, freq, 0.5, time.Second)
		rec := audiotest.NewPayloadRecorder(rate)
		var enc transcode.PCMWriter
		var err error
		switch codec {
		case "opus":
			rec = audiotest.NewPayloadRecorder(transcode.OpusClockRate)
			enc, err = transcode.NewOpusEncoder(rec, rate, transcode.OpusConfig{})
		case "PCMU":
			enc, err = transcode.NewULawEncoder(rec)
		case "PCMA":
			enc, err = transcode.NewALawEncoder(rec)
		}
		if err != nil {
			b.t.Fatalf("browser encoder: %v", err)
		}
		n := rate / 50
		pos := 0
		return func() []byte {
			if pos+n > len(tone) {
				pos = 0 // one second holds a whole number of periods
			}
			if err := enc.WriteSample(tone[pos : pos+n]); err != nil {
				b.t.Errorf("browser encode: %v", err)
			}
			pos += n
			ps := rec.Payloads()
			return ps[len(ps)-1]
		}
	}())
}

// sendPayloads sends the payloads next returns, one per 20 ms, as RTP
// packets of the microphone track, until the returned stop is called.
func (b *browser) sendPayloads(next func() []byte) (stop func()) {
	step := uint32(960)
	if codecName(b.audio.cap.MimeType) != "opus" {
		step = 160
	}
	done := make(chan struct{})
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		var seq uint16
		var ts uint32
		pace(done, b.stop, func() {
			p := next()
			if p != nil {
				// A write fails once the transport is gone (a test that
				// cuts the network); what was heard is what tests check.
				_ = b.audio.write(rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: seq == 0}, p)
				seq++
			}
			ts += step
		})
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// testPeer is a Peer with its callbacks recorded.
type testPeer struct {
	*Peer
	states chan State
	digits chan rune
	videos chan *RemoteVideo
}

// connect makes a Peer, and has b offer to it with trickle ICE both
// ways, then waits until both are connected.
func connect(t testing.TB, e *Engine, b *browser, po PeerOptions) *testPeer {
	t.Helper()
	return connectWith(t, e, b, po, b.addCandidate)
}

// connectWith is connect with the gateway's candidates going to onCand.
func connectWith(t testing.TB, e *Engine, b *browser, po PeerOptions, onCand func(ICECandidateInit)) *testPeer {
	t.Helper()
	tp := &testPeer{states: make(chan State, 64), digits: make(chan rune, 64), videos: make(chan *RemoteVideo, 8)}
	po.OnICECandidate = onCand
	po.OnStateChange = func(s State) {
		select {
		case tp.states <- s:
		default:
		}
	}
	po.OnDTMF = func(d rune) { tp.digits <- d }
	po.OnVideoTrack = func(v *RemoteVideo) { tp.videos <- v }
	p, err := e.NewPeer(context.Background(), po)
	if err != nil {
		t.Fatalf("NewPeer: %v", err)
	}
	tp.Peer = p
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	b.pc.OnICECandidate(func(c *pwebrtc.ICECandidate) {
		if c == nil {
			return
		}
		if err := p.AddICECandidate(candidateFromPion(c.ToJSON())); err != nil && p.Err() == nil {
			t.Errorf("AddICECandidate: %v", err)
		}
	})
	b.negotiate(p, nil)
	tp.waitState(t, StateConnected)
	eventually(t, "browser connected", func() bool { return b.pc.ConnectionState() == pwebrtc.PeerConnectionStateConnected })
	return tp
}

func (tp *testPeer) waitState(t testing.TB, want State) {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case s := <-tp.states:
			if s == want {
				return
			}
		case <-timeout:
			t.Fatalf("state %s not reached; now %s", want, tp.State())
		}
	}
}

// eventually polls cond until it holds or wait passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// playTone writes freq Hz to w on a 20 ms clock until stop, like the SIP
// leg would.
func playTone(t testing.TB, w transcode.PCMWriter, freq float64) (stop func()) {
	tone := audiotest.Tone(8000, freq, 0.5, time.Second)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pos := 0
		pace(done, nil, func() {
			if pos+frameSamples > len(tone) {
				pos = 0
			}
			if err := w.WriteSample(tone[pos : pos+frameSamples]); err != nil {
				t.Errorf("AudioIn write: %v", err)
			}
			pos += frameSamples
		})
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// tail returns the last d of s at 8 kHz.
func tail(s transcode.PCM16, d time.Duration) transcode.PCM16 {
	n := audiotest.Samples(8000, d)
	if len(s) < n {
		return s
	}
	return s[len(s)-n:]
}

// assertTone checks that s is mostly freq Hz at a sane level. Level and
// purity are the medians over 100 ms blocks, so that a glitch or two from
// a loaded machine (a frame dropped or concealed) does not decide the
// outcome, while a wrong codec, a wrong rate or noise still does.
func assertTone(t testing.TB, what string, s transcode.PCM16, freq float64) {
	t.Helper()
	checkTone(t, what, s, freq, true)
}

// assertToneLoose checks the peak frequency and the level of s but not
// its purity, for paths through two media clocks that a loaded machine
// stalls often enough to fill the spectrum with clicks.
func assertToneLoose(t testing.TB, what string, s transcode.PCM16, freq float64) {
	t.Helper()
	checkTone(t, what, s, freq, false)
}

func checkTone(t testing.TB, what string, s transcode.PCM16, freq float64, pure bool) {
	t.Helper()
	if len(s) < 4000 {
		t.Fatalf("%s: only %d samples", what, len(s))
	}
	f := audiotest.PeakFrequency(s, 8000)
	var levels, others []float64
	for i := 0; i+800 <= len(s); i += 800 {
		b := s[i : i+800]
		l := audiotest.GoertzelLevel(b, 8000, freq)
		levels = append(levels, l)
		others = append(others, audiotest.Level(b)-l)
	}
	lvl, other := median(levels), median(others)
	t.Logf("%s: peak %.1f Hz, median %.1f dBFS at %.0f Hz, %.1f dB more in all", what, f, lvl, freq, other)
	if d := f - freq; d < -15 || d > 15 {
		t.Errorf("%s: peak at %.1f Hz, want %.0f Hz", what, f, freq)
	}
	if lvl < -20 || lvl > 0 {
		t.Errorf("%s: %.1f dBFS at %.0f Hz, want between -20 and 0", what, lvl, freq)
	}
	if pure && other > 6 {
		t.Errorf("%s: %.1f dB more in all than in the tone: too much else", what, other)
	}
}

func median(v []float64) float64 {
	v = append([]float64(nil), v...)
	sort.Float64s(v)
	return v[len(v)/2]
}

// rawTrack is the browser's microphone track: unlike pion's static
// tracks, it lets a test send any negotiated payload type on it, such as
// telephone-event.
type rawTrack struct {
	cap pwebrtc.RTPCodecCapability

	mu     sync.Mutex
	w      pwebrtc.TrackLocalWriter
	ssrc   uint32
	pt     uint8
	codecs []pwebrtc.RTPCodecParameters
}

func (r *rawTrack) Bind(ctx pwebrtc.TrackLocalContext) (pwebrtc.RTPCodecParameters, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range ctx.CodecParameters() {
		if strings.EqualFold(c.MimeType, r.cap.MimeType) {
			r.w, r.ssrc, r.pt, r.codecs = ctx.WriteStream(), uint32(ctx.SSRC()), uint8(c.PayloadType), ctx.CodecParameters()
			return c, nil
		}
	}
	return pwebrtc.RTPCodecParameters{}, pwebrtc.ErrUnsupportedCodec
}

func (r *rawTrack) Unbind(pwebrtc.TrackLocalContext) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.w = nil
	return nil
}

func (r *rawTrack) ID() string                 { return "mic" }
func (r *rawTrack) RID() string                { return "" }
func (r *rawTrack) StreamID() string           { return "browser" }
func (r *rawTrack) Kind() pwebrtc.RTPCodecType { return pwebrtc.RTPCodecTypeAudio }

// payloadType returns the negotiated payload type of mime at clock.
func (r *rawTrack) payloadType(mime string, clock uint32) (uint8, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.codecs {
		if strings.EqualFold(c.MimeType, mime) && c.ClockRate == clock {
			return uint8(c.PayloadType), true
		}
	}
	return 0, false
}

// write sends one packet; a zero h.PayloadType means the main codec's.
func (r *rawTrack) write(h rtp.Header, payload []byte) error {
	r.mu.Lock()
	w, ssrc, pt := r.w, r.ssrc, r.pt
	r.mu.Unlock()
	if w == nil {
		return nil
	}
	h.SSRC = ssrc
	if h.PayloadType == 0 {
		h.PayloadType = pt
	}
	_, err := w.WriteRTP(&h, payload)
	return err
}

// pace calls frame once per 20 ms until done or stop is closed, catching
// up with the frames that are due when the machine was busy, as a real
// sender's clock would: a test source must not be the one that glitches.
func pace(done, stop <-chan struct{}, frame func()) {
	tk := time.NewTicker(frameDur)
	defer tk.Stop()
	next := time.Now()
	for {
		select {
		case <-done:
			return
		case <-stop:
			return
		case <-tk.C:
		}
		for now := time.Now(); !next.After(now); next = next.Add(frameDur) {
			frame()
		}
	}
}

func timeoutC() <-chan time.Time { return time.After(wait) }
