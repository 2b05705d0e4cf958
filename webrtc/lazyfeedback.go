package webrtc

import (
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	pwebrtc "github.com/pion/webrtc/v4"
)

// Two of pion's interceptors start a loop of their own, with a 100 ms
// ticker, in every peer connection as soon as it is built: the NACK
// generator (asking the browser to resend lost video) and the
// transport-wide congestion control feedback on what the browser sends.
// Both act only on streams that negotiated them, which here means video
// (registerInterceptors): the audio-only peer of every call would keep
// two goroutines and twenty wake-ups a second for nothing. lazyFeedback
// starts such an interceptor's loop when the first stream it acts on is
// bound, and never for a peer that stays audio-only.

// lazyFeedbackFactory wraps the factory of an interceptor whose loop
// starts in BindRTCPWriter; wants says which remote streams it acts on,
// exactly as the interceptor itself decides.
type lazyFeedbackFactory struct {
	inner interceptor.Factory
	wants func(*interceptor.StreamInfo) bool
}

// NewInterceptor implements interceptor.Factory.
func (f lazyFeedbackFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	in, err := f.inner.NewInterceptor(id)
	if err != nil {
		return nil, err
	}
	return &lazyFeedback{Interceptor: in, wants: f.wants}, nil
}

// lazyFeedback holds back its interceptor's BindRTCPWriter (which starts
// the loop) until a remote stream it acts on is bound. The interceptor
// returns the writer it is given unchanged, so the chain needs nothing
// from it until then.
type lazyFeedback struct {
	interceptor.Interceptor
	wants func(*interceptor.StreamInfo) bool

	mu      sync.Mutex
	writer  interceptor.RTCPWriter
	started bool
	closed  bool
}

// BindRTCPWriter implements interceptor.Interceptor: it keeps the writer
// for later.
func (l *lazyFeedback) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	l.mu.Lock()
	l.writer = w
	l.mu.Unlock()
	return w
}

// BindRemoteStream implements interceptor.Interceptor: the first stream
// the interceptor acts on starts its loop before the stream is bound, so
// the packets it records always have a loop to take them.
func (l *lazyFeedback) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	if !l.wants(info) {
		return r
	}
	l.mu.Lock()
	if !l.started && !l.closed && l.writer != nil {
		l.started = true
		l.Interceptor.BindRTCPWriter(l.writer)
	}
	started := l.started
	l.mu.Unlock()
	if !started {
		return r
	}
	return l.Interceptor.BindRemoteStream(info, r)
}

// Close implements interceptor.Interceptor.
func (l *lazyFeedback) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return l.Interceptor.Close()
}

// wantsNACK is the NACK generator's own test: the stream negotiated
// generic NACK (RFC 4585 §4.2, "nack" without a parameter).
func wantsNACK(info *interceptor.StreamInfo) bool {
	for _, fb := range info.RTCPFeedback {
		if fb.Type == pwebrtc.TypeRTCPFBNACK && fb.Parameter == "" {
			return true
		}
	}
	return false
}

// wantsTWCC is the transport-wide feedback sender's own test: the stream
// carries the transport-wide sequence number extension under a valid id.
func wantsTWCC(info *interceptor.StreamInfo) bool {
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI {
			return e.ID != 0
		}
	}
	return false
}

// lazyResponderFactory wraps the factory of pion's NACK responder, which
// resends what the browser reports lost of the streams sent to it that
// negotiated NACK, i.e. video. The responder keeps some 8 KB of its own
// per peer connection (a window of its resend rate) and looks into every
// RTCP packet from the browser for round trips that only its resends use.
// lazyResponder builds it when the first such stream is bound, and never
// for a peer that stays audio-only.
type lazyResponderFactory struct {
	inner interceptor.Factory
}

// NewInterceptor implements interceptor.Factory.
func (f lazyResponderFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	return &lazyResponder{factory: f.inner, id: id}, nil
}

// lazyResponder is one peer connection's responder, built on demand. The
// responder acts in BindRTCPReader, BindLocalStream, UnbindLocalStream and
// Close only; the rest is pion's no-op.
type lazyResponder struct {
	interceptor.NoOp
	factory interceptor.Factory
	id      string

	mu     sync.Mutex
	closed bool
	inner  atomic.Pointer[interceptor.Interceptor]
}

// built returns the responder, or nil before the first NACK stream.
func (l *lazyResponder) built() interceptor.Interceptor {
	if p := l.inner.Load(); p != nil {
		return *p
	}
	return nil
}

// build returns the responder, building it first if needed; nil once
// closed or if it could not be built (the stream then goes without
// resends, as it would without NACK).
func (l *lazyResponder) build() interceptor.Interceptor {
	l.mu.Lock()
	defer l.mu.Unlock()
	if in := l.built(); in != nil || l.closed {
		return in
	}
	in, err := l.factory.NewInterceptor(l.id)
	if err != nil {
		return nil
	}
	l.inner.Store(&in)
	return in
}

// BindRTCPReader implements interceptor.Interceptor. pion binds a reader
// per sender, before or after the streams; each one passes the packets
// through untouched until the responder exists, then through the
// responder's own reader, bound to it on its next read.
func (l *lazyResponder) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	var wrapped atomic.Pointer[interceptor.RTCPReader]
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		w := wrapped.Load()
		if w == nil {
			in := l.built()
			if in == nil {
				return r.Read(b, a)
			}
			// Binding the responder's reader has no side effect: if two
			// reads race here, one of the two is kept.
			nw := in.BindRTCPReader(r)
			wrapped.CompareAndSwap(nil, &nw)
			w = wrapped.Load()
		}
		return (*w).Read(b, a)
	})
}

// BindLocalStream implements interceptor.Interceptor.
func (l *lazyResponder) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if !wantsNACK(info) {
		return w
	}
	in := l.build()
	if in == nil {
		return w
	}
	return in.BindLocalStream(info, w)
}

// UnbindLocalStream implements interceptor.Interceptor.
func (l *lazyResponder) UnbindLocalStream(info *interceptor.StreamInfo) {
	if in := l.built(); in != nil {
		in.UnbindLocalStream(info)
	}
}

// Close implements interceptor.Interceptor.
func (l *lazyResponder) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	if in := l.built(); in != nil {
		return in.Close()
	}
	return nil
}
