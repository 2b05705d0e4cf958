package mediaclock

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeTime is a ticker and a clock the test drives: each tick sets the
// time it carries and wakes the shard.
type fakeTime struct {
	mu  sync.Mutex
	now time.Time
	c   chan time.Time
	// started receives once per shard goroutine that started, after it
	// read the time its first frame is due from.
	started chan struct{}
}

func newFakeTime() *fakeTime {
	return &fakeTime{now: time.Unix(1000, 0), c: make(chan time.Time), started: make(chan struct{}, 8)}
}

func (f *fakeTime) newTicker(time.Duration) ticker {
	f.started <- struct{}{}
	return f
}

func (f *fakeTime) C() <-chan time.Time { return f.c }
func (f *fakeTime) Stop()               {}
func (f *fakeTime) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// tick moves the time on by d and wakes the shard.
func (f *fakeTime) tick(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	now := f.now
	f.mu.Unlock()
	f.c <- now
}

type call struct{ run, skipped int }

func newFakeClock(f *fakeTime) *Clock {
	return newClock(1, Frame, f.newTicker, f.Now)
}

func TestCatchUp(t *testing.T) {
	tests := []struct {
		name  string
		after time.Duration // time since the previous frame
		want  call
	}{
		{"on time", Frame, call{1, 0}},
		{"a little late", Frame + 7*time.Millisecond, call{1, 0}},
		{"one tick dropped", 2 * Frame, call{2, 0}},
		{"three frames due", 3 * Frame, call{3, 0}},
		{"100 ms stall", 5 * Frame, call{5, 0}},
		{"140 ms stall", 7 * Frame, call{MaxBurst, 2}},
		{"one second stall", 50 * Frame, call{MaxBurst, 45}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeTime()
			c := newFakeClock(f)
			calls := make(chan call, 1)
			leg := c.Register(func(run, skipped int) { calls <- call{run, skipped} })
			defer leg.Stop()
			<-f.started
			// A first frame on time sets the phase.
			f.tick(Frame)
			if got := <-calls; got != (call{1, 0}) {
				t.Fatalf("first tick = %+v, want one frame", got)
			}
			f.tick(tc.after)
			if got := <-calls; got != tc.want {
				t.Errorf("after %v: tick = %+v, want %+v", tc.after, got, tc.want)
			}
			// Media time is kept: the next frame is due one period after
			// the last one counted, not one period after the stall.
			f.tick(Frame)
			if got := <-calls; got != (call{1, 0}) {
				t.Errorf("tick after the catch-up = %+v, want one frame", got)
			}
		})
	}
}

// TestSkippedFramesCounted checks that frames no leg produced are in the
// clock's counters, once per leg.
func TestSkippedFramesCounted(t *testing.T) {
	f := newFakeTime()
	c := newFakeClock(f)
	var wg sync.WaitGroup
	var legs []*Leg
	for range 3 {
		legs = append(legs, c.Register(func(int, int) { wg.Done() }))
	}
	<-f.started
	wg.Add(3)
	f.tick(Frame)
	wg.Wait()
	wg.Add(3)
	f.tick(10 * Frame)
	wg.Wait()
	for _, l := range legs {
		l.Stop()
	}
	st := c.Stats()
	if st.Skipped != 3*(10-MaxBurst) || st.Stalls != 1 || st.Ticks != 2 {
		t.Errorf("stats = %+v, want %d skipped over 3 legs, 1 stall, 2 ticks", st, 3*(10-MaxBurst))
	}
	// Eleven frame times fell due on the one shard; two of them were
	// served on time, the other nine late or not at all.
	if st.Due != 11 || st.Due-st.Ticks != 9 {
		t.Errorf("stats = %+v, want 11 frame times due, 9 of them not served on time", st)
	}
}

// TestStop checks that a stopped leg never ticks again and that the
// clock's goroutines end with the last leg (goleak in TestMain).
func TestStop(t *testing.T) {
	c := New(2)
	var mu sync.Mutex
	n := map[int]int{}
	stopped := map[int]bool{}
	ticked := make(chan struct{}, 100)
	var legs []*Leg
	for i := range 4 {
		legs = append(legs, c.Register(func(run, _ int) {
			mu.Lock()
			if stopped[i] {
				t.Errorf("leg %d ticked after Stop returned", i)
			}
			n[i] += run
			mu.Unlock()
			select {
			case ticked <- struct{}{}:
			default:
			}
		}))
	}
	for range 20 {
		<-ticked
	}
	for i, l := range legs {
		l.Stop()
		mu.Lock()
		stopped[i] = true
		mu.Unlock()
		l.Stop() // idempotent
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range legs {
		if n[i] == 0 {
			t.Errorf("leg %d never ticked", i)
		}
	}
	// A clock whose legs all left starts again for a new one.
	again := make(chan struct{}, 1)
	l := c.Register(func(int, int) {
		select {
		case again <- struct{}{}:
		default:
		}
	})
	<-again
	l.Stop()
}

// TestRegisterSpreads checks that legs go to the least loaded goroutine.
func TestRegisterSpreads(t *testing.T) {
	f := newFakeTime()
	c := newClock(3, Frame, f.newTicker, f.Now)
	var legs []*Leg
	for range 7 {
		legs = append(legs, c.Register(func(int, int) {}))
	}
	sizes := []int{c.shards[0].size(), c.shards[1].size(), c.shards[2].size()}
	if sizes[0]+sizes[1]+sizes[2] != 7 || max(sizes[0], sizes[1], sizes[2])-min(sizes[0], sizes[1], sizes[2]) > 1 {
		t.Errorf("legs per goroutine = %v, want 7 spread evenly", sizes)
	}
	for _, l := range legs {
		l.Stop()
	}
}
