package audiotest

import (
	"fmt"
	"sync"

	"github.com/segue-rtc/segue/transcode"
)

// PayloadRecorder is a writer of encoded payloads (G.711, Opus) that keeps
// a copy of each, for the end of an encoding chain under test. It is safe
// for concurrent use.
type PayloadRecorder struct {
	rate     int
	mu       sync.Mutex
	payloads [][]byte
	closed   bool
}

var _ transcode.BytesWriter = (*PayloadRecorder)(nil)

// NewPayloadRecorder returns an empty recorder whose SampleRate is rate
// (the RTP clock: 8000 for G.711, transcode.OpusClockRate for Opus).
func NewPayloadRecorder(rate int) *PayloadRecorder { return &PayloadRecorder{rate: rate} }

// WriteSample keeps a copy of p.
func (r *PayloadRecorder) WriteSample(p []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return transcode.ErrClosed
	}
	r.payloads = append(r.payloads, append([]byte(nil), p...))
	return nil
}

// Payloads returns the payloads written so far, in order.
func (r *PayloadRecorder) Payloads() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.payloads...)
}

// SampleRate returns the rate given to NewPayloadRecorder.
func (r *PayloadRecorder) SampleRate() int { return r.rate }

// Close marks the recorder closed; later writes fail with ErrClosed.
func (r *PayloadRecorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

// String names the recorder and its rate.
func (r *PayloadRecorder) String() string { return fmt.Sprintf("PayloadRecorder(%d)", r.rate) }
