package transcode

import (
	"fmt"
	"sync"
)

// Switch is a writer whose destination can be replaced while audio flows:
// hold, transfer and escalation re-point a leg's audio without rebuilding
// it. Writes while no destination is set are dropped silently. Writes and
// Swap may run on different goroutines; a write in progress finishes before
// Swap returns, so after Swap the old destination receives nothing more
// from the switch and the caller may close it.
type Switch[T any] struct {
	rate int
	name string
	mu   sync.Mutex
	dst  WriteCloser[T]
	err  error
}

// PCMSwitch switches PCM writers.
type PCMSwitch = Switch[PCM16]

// NewSwitch returns a switch with no destination for audio at rate. name
// appears in String, e.g. "web-out".
func NewSwitch[T any](rate int, name string) *Switch[T] {
	return &Switch[T]{rate: rate, name: name}
}

// Swap makes w the destination and returns the previous one (nil if none);
// the caller closes the old writer. A nil w disconnects the switch. A w at
// another rate than the switch is accepted, but every write then returns an
// error wrapping ErrRateMismatch until a writer at the right rate is set:
// wrap PCM writers with Resample first.
func (s *Switch[T]) Swap(w WriteCloser[T]) (old WriteCloser[T]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, s.dst, s.err = s.dst, w, nil
	if w != nil && w.SampleRate() != s.rate {
		s.err = fmt.Errorf("transcode: switch %s at %d Hz to %s at %d Hz: %w", s.name, s.rate, w, w.SampleRate(), ErrRateMismatch)
	}
	return old
}

// WriteSample writes to the current destination, or drops the sample when
// there is none.
func (s *Switch[T]) WriteSample(sample T) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if s.dst == nil {
		return nil
	}
	return s.dst.WriteSample(sample)
}

// SampleRate is the rate given to NewSwitch.
func (s *Switch[T]) SampleRate() int { return s.rate }

// Close closes the current destination, if any, and disconnects it.
func (s *Switch[T]) Close() error {
	if old := s.Swap(nil); old != nil {
		return old.Close()
	}
	return nil
}

// String shows the switch and the chain it currently leads.
func (s *Switch[T]) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dst == nil {
		return fmt.Sprintf("Switch(%s) -> none", s.name)
	}
	return fmt.Sprintf("Switch(%s) -> %s", s.name, s.dst)
}
