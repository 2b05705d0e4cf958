package webrtc

import (
	"encoding/binary"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/segue-rtc/segue/transcode/audiotest"
)

// feedbackLoops counts the goroutines running pion's NACK generator loop
// and its transport-wide feedback loop, in the whole process (the test
// browsers with sendOnlyFeedback run neither).
func feedbackLoops() (nacks, twccs int) {
	buf := make([]byte, 1<<22)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, g := range strings.Split(stacks, "\n\n") {
		switch {
		case strings.Contains(g, "nack.(*GeneratorInterceptor).loop"):
			nacks++
		case strings.Contains(g, "twcc.(*SenderInterceptor).loop"):
			twccs++
		}
	}
	return nacks, twccs
}

// TestFeedbackLoopsStartWithVideo: a call's audio-only peer runs no NACK
// generator and no transport-wide feedback loop; the first camera starts
// both, and they do their work: a packet the camera never sent is asked
// for, and the camera's packets are acknowledged in transport-wide
// feedback. Closing the peer ends them.
func TestFeedbackLoopsStartWithVideo(t *testing.T) {
	e := newTestEngine(t, Config{})

	// An audio call: both loops stay off for the life of the call.
	caller := newBrowser(t, browserOptions{sendOnlyFeedback: true})
	// Loops of peers other tests left running, if any, are not ours.
	baseN, baseC := feedbackLoops()
	call := connect(t, e, caller, PeerOptions{Name: "caller"})
	heard := audiotest.NewRecorder(8000)
	call.SwapAudioOut(heard)
	stopMic := caller.sendTone(1000)
	defer stopMic()
	eventually(t, "the caller's audio at the gateway", func() bool { return len(heard.Samples()) >= 8000 })
	if n, c := feedbackLoops(); n != baseN || c != baseC {
		t.Fatalf("audio-only peer runs %d NACK generator and %d transport-wide feedback loops, want none", n-baseN, c-baseC)
	}

	// A customer with a camera whose packets carry transport-wide
	// sequence numbers, as Chrome's do.
	customer := newBrowser(t, browserOptions{sendOnlyFeedback: true})
	var nackedLost, ccs atomic.Int32
	const lost = 7
	camera := customer.addCamera(t, func(p rtcp.Packet) {
		switch p := p.(type) {
		case *rtcp.TransportLayerNack:
			for _, pair := range p.Nacks {
				for _, s := range pair.PacketList() {
					if s == lost {
						nackedLost.Add(1)
					}
				}
			}
		case *rtcp.TransportLayerCC:
			ccs.Add(1)
		}
	})
	pc := connect(t, e, customer, PeerOptions{Name: "customer"})
	var seq uint16
	defer customer.film(func() {
		if seq == lost {
			seq++ // never sent
		}
		payload := make([]byte, 8)
		binary.BigEndian.PutUint32(payload[4:], uint32(seq))
		payload[0] = 0x10
		if err := camera.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 1800, Marker: true}, Payload: payload}); err != nil {
			t.Errorf("camera: %v", err)
		}
		seq++
	})()
	select {
	case <-pc.videos:
	case <-timeoutC():
		t.Fatal("no OnVideoTrack for the camera")
	}
	eventually(t, "a NACK for the packet the camera skipped", func() bool { return nackedLost.Load() > 0 })
	eventually(t, "transport-wide feedback on the camera", func() bool { return ccs.Load() > 0 })
	if n, c := feedbackLoops(); n != baseN+1 || c != baseC+1 {
		t.Errorf("with one camera: %d NACK generator and %d transport-wide feedback loops, want 1 and 1", n-baseN, c-baseC)
	}

	if err := pc.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the camera peer's loops ended", func() bool {
		n, c := feedbackLoops()
		return n == baseN && c == baseC
	})
	if err := call.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLazyFeedbackClosedBeforeVideo: an interceptor closed before any
// stream it acts on never starts, and a late stream is passed through.
func TestLazyFeedbackClosedBeforeVideo(t *testing.T) {
	var bound atomic.Int32
	inner := &countingInterceptor{bound: &bound}
	l := &lazyFeedback{Interceptor: inner, wants: wantsNACK}
	w := interceptor.RTCPWriterFunc(func([]rtcp.Packet, interceptor.Attributes) (int, error) { return 0, nil })
	l.BindRTCPWriter(w)
	audio := &interceptor.StreamInfo{MimeType: pwebrtc.MimeTypeOpus}
	video := &interceptor.StreamInfo{MimeType: pwebrtc.MimeTypeVP8, RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack"}}}
	l.BindRemoteStream(audio, nil)
	if l.running() || bound.Load() != 0 {
		t.Fatal("started for an audio stream")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.BindRemoteStream(video, nil)
	if l.running() || bound.Load() != 0 {
		t.Error("started after Close")
	}
	if !wantsTWCC(&interceptor.StreamInfo{RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", ID: 5}}}) {
		t.Error("wantsTWCC false for a stream with the extension")
	}
	if wantsTWCC(&interceptor.StreamInfo{RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", ID: 0}}}) {
		t.Error("wantsTWCC true for extension id 0, which the feedback sender ignores")
	}
	if wantsNACK(&interceptor.StreamInfo{RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack", Parameter: "pli"}}}) {
		t.Error("wantsNACK true for PLI alone")
	}
}

type countingInterceptor struct {
	interceptor.NoOp
	bound *atomic.Int32
}

func (c *countingInterceptor) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	c.bound.Add(1)
	return w
}

// running reports whether the interceptor's loop was started.
func (l *lazyFeedback) running() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.started
}

// fakeResponder records what the lazy responder hands it.
type fakeResponder struct {
	interceptor.NoOp
	reads, streams, unbinds, closes atomic.Int32
}

func (f *fakeResponder) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		f.reads.Add(1)
		return r.Read(b, a)
	})
}

func (f *fakeResponder) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	f.streams.Add(1)
	return w
}

func (f *fakeResponder) UnbindLocalStream(*interceptor.StreamInfo) { f.unbinds.Add(1) }

func (f *fakeResponder) Close() error { f.closes.Add(1); return nil }

type fakeResponderFactory struct {
	built *[]*fakeResponder
}

func (f fakeResponderFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	r := &fakeResponder{}
	*f.built = append(*f.built, r)
	return r, nil
}

// TestLazyResponder: the NACK responder is built with the first local
// stream that negotiated NACK, once, and never for audio; RTCP readers
// bound before it pass packets through, then go through it; streams
// unbind and the peer closes through it; one closed first never builds
// it.
func TestLazyResponder(t *testing.T) {
	var built []*fakeResponder
	in, err := lazyResponderFactory{inner: fakeResponderFactory{built: &built}}.NewInterceptor("pc")
	if err != nil {
		t.Fatal(err)
	}
	var netReads atomic.Int32
	network := interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		netReads.Add(1)
		return len(b), a, nil
	})
	reader := in.BindRTCPReader(network)
	audio := &interceptor.StreamInfo{SSRC: 1, MimeType: pwebrtc.MimeTypeOpus}
	video := &interceptor.StreamInfo{SSRC: 2, MimeType: pwebrtc.MimeTypeVP8, RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack"}}}
	in.BindLocalStream(audio, nil)
	if _, _, err := reader.Read(make([]byte, 8), nil); err != nil {
		t.Fatal(err)
	}
	if len(built) != 0 || netReads.Load() != 1 {
		t.Fatalf("audio only: %d responders built, %d reads reached the network; want 0 and 1", len(built), netReads.Load())
	}
	in.UnbindLocalStream(audio)

	in.BindLocalStream(video, nil)
	in.BindLocalStream(&interceptor.StreamInfo{SSRC: 3, RTCPFeedback: video.RTCPFeedback}, nil)
	if len(built) != 1 {
		t.Fatalf("two NACK streams: %d responders built, want 1", len(built))
	}
	r := built[0]
	if r.streams.Load() != 2 {
		t.Errorf("responder bound %d streams, want the 2 NACK ones", r.streams.Load())
	}
	if _, _, err := reader.Read(make([]byte, 8), nil); err != nil {
		t.Fatal(err)
	}
	late := in.BindRTCPReader(network)
	if _, _, err := late.Read(make([]byte, 8), nil); err != nil {
		t.Fatal(err)
	}
	if r.reads.Load() != 2 || netReads.Load() != 3 {
		t.Errorf("after the responder: %d reads through it, %d from the network; want 2 and 3", r.reads.Load(), netReads.Load())
	}
	in.UnbindLocalStream(video)
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	if r.unbinds.Load() != 1 || r.closes.Load() != 1 {
		t.Errorf("responder: %d unbinds and %d closes, want 1 and 1", r.unbinds.Load(), r.closes.Load())
	}

	closed, err := lazyResponderFactory{inner: fakeResponderFactory{built: &built}}.NewInterceptor("pc2")
	if err != nil {
		t.Fatal(err)
	}
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	closed.BindLocalStream(video, nil)
	if len(built) != 1 {
		t.Errorf("a responder built after Close")
	}
}

// TestNACKStormOnAudioCall: a browser on an audio-only call floods the
// gateway with NACKs for the gateway's audio. The NACKs are refused as
// naming no stream that answers them, nothing is resent, no goroutines
// pile up, and the call's audio from the browser keeps arriving.
func TestNACKStormOnAudioCall(t *testing.T) {
	e := newTestEngine(t, Config{})
	b := newBrowser(t, browserOptions{})
	p := connect(t, e, b, PeerOptions{Name: "caller"})
	heard := audiotest.NewRecorder(8000)
	p.SwapAudioOut(heard)
	defer b.sendTone(1000)()
	eventually(t, "the browser's audio at the gateway", func() bool { return len(heard.Samples()) >= 8000 })
	ssrc := uint32(p.sender.GetParameters().Encodings[0].SSRC)
	before := runtime.NumGoroutine()
	for i := range 400 {
		if err := b.pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: ssrc,
			Nacks: rtcp.NackPairsFromSequenceNumbers(seqRange(uint16(i*4), 64))}}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the NACKs refused", func() bool { return p.NACKStats().Refused[RefusedNoStream] >= 300 })
	if s := p.NACKStats(); s.Resent != 0 {
		t.Errorf("resent %d packets of an audio stream: %+v", s.Resent, s)
	}
	if after := runtime.NumGoroutine(); after > before+5 {
		t.Errorf("goroutines %d → %d during the storm", before, after)
	}
	n := len(heard.Samples())
	eventually(t, "the browser's audio still arriving", func() bool { return len(heard.Samples()) >= n+8000 })
}
