package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live       uint64
		rate, cost float64
		want       int
	}{
		// Before the first collection the live heap is not known: Go's
		// default, whose first collection comes at 4 MiB.
		{0, 0, 0, 100},
		// No collection seen yet: a quarter of the live heap plus 8 MiB.
		{3 << 20, 0, 0, 292},   // an idle gateway: 8 MiB + 0.75 MiB over 3 MiB
		{32 << 20, 0, 0, 50},   // 8 MiB + 8 MiB over 32 MiB
		{128 << 20, 0, 0, 32},  // 8 MiB + 32 MiB over 128 MiB, rounded up
		{1 << 30, 0, 0, 26},    // 8 MiB + 256 MiB over 1 GiB
		{100 << 30, 0, 0, 26},  // the quarter dominates
		{512 << 10, 0, 0, 215}, // a tiny heap: not 1625 %, whose heap minimum would be 65 MiB; 8.6 MiB in all
		// Calls: 0.64 MB/s, 12 ms a collection; 0.77 MB would keep the
		// collector at 1 %: the floor, 1 MiB over 38 MiB.
		{38 << 20, 0.64e6, 0.012, 3},
		// A chat at full speed: 100 MB/s, 5 ms a collection; 50 MB
		// wanted, the quarter plus 8 MiB at most.
		{32 << 20, 100e6, 0.005, 50},
		// In between: 10 MB/s, 20 ms a collection: 20 MB over 128 MiB.
		{128 << 20, 10e6, 0.02, 15},
	} {
		if got := gcPercentFor(c.live, c.rate, c.cost); got != c.want {
			t.Errorf("gcPercentFor(%d MiB, %.0f B/s, %.3f s) = %d, want %d", c.live>>20, c.rate, c.cost, got, c.want)
		}
	}
}

// pacerSteps returns a function that adds to r's counters what one
// reading every dt saw (bytes allocated, collections and their CPU) and
// hands the reading to p.
func pacerSteps(p *gcPacer, r *gcReading, dt time.Duration) func(allocs, collections uint64, cpu float64) int {
	return func(allocs, collections uint64, cpu float64) int {
		r.allocs += allocs
		r.cycles += collections
		r.gcCPU += cpu
		return p.next(*r, dt)
	}
}

// TestGCPacer follows the readings of a gateway with a live heap of 64
// MiB a second apart: the headroom drops to the floor once it knows the
// collector's cost at a low allocation rate, rises at once with a burst,
// and comes back down some seconds after it.
func TestGCPacer(t *testing.T) {
	var p gcPacer
	r := gcReading{live: 64 << 20}
	step := pacerSteps(&p, &r, time.Second)
	if got := p.next(r, 0); got != 38 { // (8 + 16) MiB over 64 MiB
		t.Fatalf("first reading: %d, want 38 (nothing known of the collector)", got)
	}
	if got := step(1e6, 0, 0); got != 38 {
		t.Fatalf("no collection yet: %d, want 38", got)
	}
	if got := step(1e6, 1, 0.01); got != 2 { // the floor: 1 MiB over 64 MiB
		t.Fatalf("1 MB/s at 10 ms a collection: %d, want 2", got)
	}
	if got := step(500e6, 2, 0.02); got != 38 {
		t.Fatalf("a burst of 500 MB/s: %d, want 38", got)
	}
	if got := step(1e6, 0, 0); got != 38 {
		t.Fatalf("a second after the burst: %d, want 38 still", got)
	}
	got := 0
	for range 120 {
		got = step(1e6, 0, 0)
	}
	if got != 2 {
		t.Fatalf("two minutes after the burst: %d, want 2", got)
	}
	// The counters never go back; a reading that did would change neither
	// the rate nor the cost.
	rate, cost := p.rate, p.cost
	r.allocs -= 10
	p.next(r, time.Second)
	if p.rate != rate || p.cost != cost {
		t.Fatalf("rate %.0f, cost %.4f after a reading that went back; want %.0f, %.4f", p.rate, p.cost, rate, cost)
	}
}

// TestGCPacerWindow reads every 100 ms, as the tuner does: a blip of
// half a megabyte in one reading counts over a second, not ten times
// over, while a sustained burst reaches the most headroom within a few
// readings.
func TestGCPacerWindow(t *testing.T) {
	var p gcPacer
	r := gcReading{live: 64 << 20}
	step := pacerSteps(&p, &r, 100*time.Millisecond)
	p.next(r, 0)
	step(100e3, 1, 0.01) // 10 ms a collection
	for range 20 {       // 1 MB/s for two seconds: the floor
		if got := step(100e3, 0, 0); got != 2 {
			t.Fatalf("1 MB/s: %d, want 2 (1 MiB over 64 MiB)", got)
		}
	}
	// 0.6 MB in one reading: 1.5 MB over the last second, 1.5 MB of
	// headroom; measured over the 100 ms alone it would be 6 MB (10 %).
	if got := step(600e3, 0, 0); got != 3 {
		t.Fatalf("a blip of 0.6 MB: %d, want 3", got)
	}
	// 100 MB/s from now on.
	if got := step(10e6, 0, 0); got <= 3 {
		t.Fatalf("first reading of a burst: %d, want more than 3", got)
	}
	step(10e6, 0, 0)
	if got := step(10e6, 0, 0); got != 38 {
		t.Fatalf("third reading of a burst of 100 MB/s: %d, want 38 ((8 + 16) MiB over 64 MiB)", got)
	}
}

// TestGCPercentGivesTheHeapAskedFor sets the percentage the tuner picks
// for this test's own small live heap and reads the heap size of the next
// collection back from the runtime: live + the headroom, not the heap
// minimum that a large percentage scales (4 MiB × GOGC / 100).
func TestGCPercentGivesTheHeapAskedFor(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/goal:bytes"}}
	for _, c := range []struct {
		name       string
		rate, cost float64
	}{
		{"cost not known", 0, 0},
		{"at the floor", 1e5, 0.001},
	} {
		runtime.GC()
		metrics.Read(s)
		live := s[0].Value.Uint64()
		debug.SetGCPercent(gcPercentFor(live, c.rate, c.cost))
		metrics.Read(s)
		headroom := float64(gcHeadroomBase) + gcHeadroomFraction*float64(live)
		if c.cost > 0 {
			headroom = gcHeadroomFloor
		}
		want := float64(live) + headroom
		if got := float64(s[1].Value.Uint64()); got < want*0.9 || got > want*1.1 {
			t.Errorf("%s: live heap %.1f MiB, next collection at %.1f MiB, want about %.1f MiB", c.name, float64(live)/(1<<20), got/(1<<20), want/(1<<20))
		}
	}
}

func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// TestTuneGC: without GOGC in the environment the collector's percentage
// follows the live heap, by changes of a tenth or more; with it, it is
// left alone.
func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	if v, set := os.LookupEnv("GOGC"); set {
		defer os.Setenv("GOGC", v)
	}
	os.Unsetenv("GOGC")
	var live atomic.Uint64
	live.Store(32 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		// No allocation and no collection: the headroom follows the live
		// heap alone.
		tuneGCWith(ctx, log, time.Millisecond, func() (gcReading, bool) { return gcReading{live: live.Load()}, true })
	}()
	waitGOGC := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for gogc() != want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if got := gogc(); got != want {
			t.Fatalf("GOGC %d with a live heap of %d MiB, want %d", got, live.Load()>>20, want)
		}
	}
	waitGOGC(50) // 8 MiB + 8 MiB over 32 MiB
	live.Store(128 << 20)
	waitGOGC(32)
	// 34 instead of 32 (8 MiB + 24 MiB over 96 MiB): less than a tenth,
	// left as it is, while the next change is followed.
	if p := gcPercentFor(96<<20, 0, 0); p != 34 {
		t.Fatalf("gcPercentFor(96 MiB) = %d, the test expects 34", p)
	}
	live.Store(96 << 20)
	time.Sleep(20 * time.Millisecond)
	if got := gogc(); got != 32 {
		t.Errorf("GOGC %d after a change of less than a tenth, want 32 kept", got)
	}
	live.Store(1 << 30)
	waitGOGC(26)
	cancel()
	<-done

	// The runtime's own figure: a live heap is read and followed.
	debug.SetGCPercent(100)
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() { defer close(done); tuneGC(ctx, log) }()
	deadline := time.Now().Add(10 * time.Second)
	for gogc() == 100 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := gogc(); got < 26 || got > gcPercentMax || got == 100 {
		t.Errorf("GOGC %d from the runtime's live heap, want it set within 26-%d", got, gcPercentMax)
	}
	cancel()
	<-done

	debug.SetGCPercent(100)
	t.Setenv("GOGC", "100")
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	returned := make(chan struct{})
	go func() { defer close(returned); tuneGC(ctx, log) }()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("tuneGC kept running with GOGC set")
	}
	if got := gogc(); got != 100 {
		t.Errorf("GOGC %d after tuneGC with GOGC=100 set, want 100", got)
	}
}
