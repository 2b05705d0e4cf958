package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, gcPercentMax},         // before the first collection
		{512 << 10, gcPercentMax}, // a tiny heap: capped
		{3 << 20, 292},            // an idle gateway: 8 MiB + 0.75 MiB over 3 MiB
		{32 << 20, 50},            // 8 MiB + 8 MiB over 32 MiB
		{128 << 20, 32},           // 8 MiB + 32 MiB over 128 MiB, rounded up
		{1 << 30, 26},             // 8 MiB + 256 MiB over 1 GiB
		{100 << 30, 26},           // the quarter dominates
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", c.live>>20, got, c.want)
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
		tuneGCWith(ctx, log, time.Millisecond, func() (uint64, bool) { return live.Load(), true })
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
	if gcPercentFor(96<<20) != 34 {
		t.Fatalf("gcPercentFor(96 MiB) = %d, the test expects 34", gcPercentFor(96<<20))
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
