package main

import (
	"context"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The collector's headroom. Go's default (GOGC=100) lets the heap grow to
// twice the live heap before a collection. Most of a call's live heap is
// codec state that lives as long as the call, and a call allocates
// little per frame, so that headroom costs memory per call and buys
// almost no CPU: at a fixed headroom the collector runs as often
// whatever the number of calls. The gateway keeps instead a headroom of
// a quarter of the live heap plus a floor, so that a gateway with little
// live heap (chat, few calls) does not collect more often than with
// Go's default, and a loaded one holds a quarter more than its live heap
// rather than twice it. An operator's GOGC in the environment turns this
// off (docs/operations.md).
const (
	gcHeadroomFloor    = 8 << 20 // bytes
	gcHeadroomFraction = 0.25
	gcPercentMax       = 1000
	gcTuneEvery        = time.Second
)

// gcPercentFor returns the GOGC percentage that gives a heap of live
// bytes the headroom above.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return gcPercentMax
	}
	p := math.Ceil(100 * (gcHeadroomFloor + gcHeadroomFraction*float64(live)) / float64(live))
	return int(min(p, gcPercentMax))
}

// tuneGC keeps the collector's percentage at gcPercentFor the live heap,
// checked every gcTuneEvery, until ctx ends. It does nothing when GOGC
// is set in the environment.
func tuneGC(ctx context.Context, log *slog.Logger) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	tuneGCWith(ctx, log, gcTuneEvery, func() (uint64, bool) {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0, false
		}
		return sample[0].Value.Uint64(), true
	})
}

// tuneGCWith is tuneGC reading the live heap with live, every every.
func tuneGCWith(ctx context.Context, log *slog.Logger, every time.Duration, live func() (uint64, bool)) {
	if _, set := os.LookupEnv("GOGC"); set {
		log.Info("garbage collector left to GOGC", "GOGC", os.Getenv("GOGC"))
		return
	}
	current := -1
	apply := func() {
		n, ok := live()
		if !ok {
			return
		}
		p := gcPercentFor(n)
		// Follow changes of a tenth or more: each call changes the
		// live heap a little, and the exact figure does not matter.
		if current < 0 || math.Abs(float64(p-current)) >= float64(current)/10 {
			debug.SetGCPercent(p)
			current = p
		}
	}
	apply()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			apply()
		}
	}
}
