package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
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
// follows the live heap; with it, it is left alone.
func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	if v, set := os.LookupEnv("GOGC"); set {
		defer os.Setenv("GOGC", v)
	}
	os.Unsetenv("GOGC")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tuneGC(ctx, log) }()
	deadline := time.Now().Add(10 * time.Second)
	for gogc() == 100 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	want := gcPercentFor(s[0].Value.Uint64())
	if got := gogc(); got == 100 || got < want*9/10 || got > want*11/10 {
		t.Errorf("GOGC %d with a live heap of %d KiB, want about %d", got, s[0].Value.Uint64()>>10, want)
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
