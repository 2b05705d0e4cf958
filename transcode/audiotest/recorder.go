package audiotest

import (
	"fmt"
	"sync"

	"github.com/segue-rtc/segue/transcode"
)

// Recorder is a PCM writer that keeps everything written to it, for the
// end of a chain under test. It is safe for concurrent use.
type Recorder struct {
	rate   int
	mu     sync.Mutex
	pcm    transcode.PCM16
	frames int
	closed bool
}

var _ transcode.PCMWriter = (*Recorder)(nil)

// NewRecorder returns an empty Recorder at rate.
func NewRecorder(rate int) *Recorder { return &Recorder{rate: rate} }

// WriteSample appends a copy of s.
func (r *Recorder) WriteSample(s transcode.PCM16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return transcode.ErrClosed
	}
	r.pcm = append(r.pcm, s...)
	r.frames++
	return nil
}

// Samples returns a copy of everything written so far.
func (r *Recorder) Samples() transcode.PCM16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(transcode.PCM16(nil), r.pcm...)
}

// Frames returns how many writes were made.
func (r *Recorder) Frames() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.frames
}

// Closed reports whether Close was called.
func (r *Recorder) Closed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// SampleRate returns the rate given to NewRecorder.
func (r *Recorder) SampleRate() int { return r.rate }

// Close marks the recorder closed; later writes fail with ErrClosed.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

// String names the recorder and its rate.
func (r *Recorder) String() string { return fmt.Sprintf("Recorder(%d)", r.rate) }
