package mediaclock

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// Frame is the clock's period: one audio frame.
	Frame = 20 * time.Millisecond
	// MaxBurst is the most frames a leg produces in one tick after a
	// stall: 100 ms, which a receiver's jitter buffer absorbs as jitter.
	// Older frames that fell due are skipped: sending more at once would
	// only overflow the far end's jitter buffer, and playing them late
	// would add their delay to the rest of the call.
	MaxBurst = 5
)

// TickFunc produces a leg's media for one tick of the clock: run frames
// (1 to MaxBurst, back to back, the newest last), after skipping skipped
// frames whose time passed while the clock was stalled. It runs on one of
// the clock's goroutines, together with other legs' ticks, so it must not
// block (no waiting on a lock that a network read holds for long, no
// channel send that can wait) and must not call Stop on its own Leg.
type TickFunc func(run, skipped int)

// Clock runs the ticks of registered legs every Frame. The zero value is
// not usable; use New or Shared. Its methods are safe for concurrent use.
// A Clock runs goroutines only while legs are registered.
type Clock struct {
	period time.Duration
	// newTicker makes the source of wake-ups; tests replace it.
	newTicker func(time.Duration) ticker
	now       func() time.Time

	mu     sync.Mutex
	shards []*shard
	ticks  atomic.Uint64
	due    atomic.Uint64
	stalls atomic.Uint64
	skips  atomic.Uint64
}

type ticker interface {
	C() <-chan time.Time
	Stop()
}

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }

// New returns a clock whose legs are spread over shards goroutines (at
// least one); shards ≤ 0 means one per processor (GOMAXPROCS).
func New(shards int) *Clock {
	return newClock(shards, Frame, func(d time.Duration) ticker { return realTicker{time.NewTicker(d)} }, time.Now)
}

func newClock(shards int, period time.Duration, newTicker func(time.Duration) ticker, now func() time.Time) *Clock {
	if shards <= 0 {
		shards = runtime.GOMAXPROCS(0)
	}
	c := &Clock{period: period, newTicker: newTicker, now: now}
	for i := range shards {
		c.shards = append(c.shards, &shard{c: c, phase: period * time.Duration(i) / time.Duration(shards)})
	}
	return c
}

var shared = sync.OnceValue(func() *Clock { return New(0) })

// Shared returns the process's media clock, the one every leg uses unless
// it is given another.
func Shared() *Clock { return shared() }

// Stats counts the clock's work since it was made.
type Stats struct {
	// Ticks is the number of shard ticks run.
	Ticks uint64
	// Due is the number of frame times that fell due on the shards,
	// summed over shards: one per Frame per shard with legs, whether its
	// tick ran on time, late in a catch-up, or skipped it. Due minus
	// Ticks is the frame times the clock did not serve on time (more
	// than a frame late), the sign of a process short of CPU.
	Due uint64
	// Stalls counts ticks that ran more than one frame (a catch-up).
	Stalls uint64
	// Skipped counts frames skipped per leg, summed over legs.
	Skipped uint64
}

// Stats returns the clock's counters.
func (c *Clock) Stats() Stats {
	return Stats{Ticks: c.ticks.Load(), Due: c.due.Load(), Stalls: c.stalls.Load(), Skipped: c.skips.Load()}
}

// Leg is a registered tick function.
type Leg struct {
	s *shard
	f TickFunc
	// mu is held while f runs, so that Stop can wait for a running tick.
	mu   sync.Mutex
	gone bool
}

// Register adds f to the clock, on the goroutine with the fewest legs.
// Its first tick comes within one Frame.
func (c *Clock) Register(f TickFunc) *Leg {
	c.mu.Lock()
	s := c.shards[0]
	for _, o := range c.shards[1:] {
		if o.size() < s.size() {
			s = o
		}
	}
	c.mu.Unlock()
	l := &Leg{s: s, f: f}
	s.add(l)
	return l
}

// Stop removes the leg from the clock. Once it returns the leg's tick is
// not running and never runs again. It is idempotent. It must not be
// called from a TickFunc.
func (l *Leg) Stop() {
	l.mu.Lock()
	if l.gone {
		l.mu.Unlock()
		return
	}
	l.gone = true
	l.mu.Unlock()
	l.s.remove(l)
}

// run calls the leg's tick unless it was stopped.
func (l *Leg) run(n, skipped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.gone {
		l.f(n, skipped)
	}
}

// shard is one goroutine's share of the legs, ticked together.
type shard struct {
	c *Clock
	// phase staggers the shards' ticks over the period, so that they do
	// not all wake at once, and so that a leg that feeds a leg of another
	// shard (the two legs of a call) does so half a period (with two
	// shards) before or after it reads, never in a race at the same
	// instant.
	phase time.Duration

	mu   sync.Mutex
	legs []*Leg // copied on write; the goroutine reads a snapshot
	quit chan struct{}
	done chan struct{}
	snap atomic.Pointer[[]*Leg]
}

func (s *shard) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.legs)
}

func (s *shard) add(l *Leg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	legs := append(append(make([]*Leg, 0, len(s.legs)+1), s.legs...), l)
	s.legs = legs
	s.snap.Store(&legs)
	if s.quit == nil {
		s.quit, s.done = make(chan struct{}), make(chan struct{})
		go s.loop(s.quit, s.done)
	}
}

// remove drops l; the last leg out stops the goroutine and waits for it.
func (s *shard) remove(l *Leg) {
	s.mu.Lock()
	legs := make([]*Leg, 0, len(s.legs))
	for _, o := range s.legs {
		if o != l {
			legs = append(legs, o)
		}
	}
	s.legs = legs
	s.snap.Store(&legs)
	var done chan struct{}
	if len(legs) == 0 && s.quit != nil {
		close(s.quit)
		done = s.done
		s.quit, s.done = nil, nil
	}
	s.mu.Unlock()
	if done != nil {
		<-done
	}
}

// loop ticks the shard's legs until quit is closed. It keeps media time:
// each wake-up runs every frame due since the last one, the newest
// MaxBurst of them produced and the older ones skipped.
func (s *shard) loop(quit, done chan struct{}) {
	defer close(done)
	c := s.c
	if s.phase > 0 {
		wait := time.NewTimer(s.phase)
		select {
		case <-quit:
			wait.Stop()
			return
		case <-wait.C:
		}
	}
	// next is read before the ticker starts, so that no wake-up comes
	// before the frame it is for (tickers fire late, never early).
	next := c.now().Add(c.period)
	t := c.newTicker(c.period)
	defer t.Stop()
	for {
		select {
		case <-quit:
			return
		case <-t.C():
		}
		now := c.now()
		if now.Before(next) {
			continue
		}
		due := int(now.Sub(next)/c.period) + 1
		next = next.Add(time.Duration(due) * c.period)
		skipped := max(due-MaxBurst, 0)
		run := due - skipped
		c.ticks.Add(1)
		c.due.Add(uint64(due))
		if due > 1 {
			c.stalls.Add(1)
		}
		legs := *s.snap.Load()
		if skipped > 0 {
			c.skips.Add(uint64(skipped) * uint64(len(legs)))
		}
		for _, l := range legs {
			l.run(run, skipped)
		}
	}
}
