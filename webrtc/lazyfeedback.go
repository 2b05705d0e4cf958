package webrtc

import (
	"sync"

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
