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

// The collector's headroom: how far the heap may grow above the live heap
// before the next collection. Go's default (GOGC=100) lets it grow to
// twice the live heap. Most of a call's live heap is codec state that
// lives as long as the call, and a call allocates little per frame, so
// that headroom costs memory per call and buys almost no CPU. The
// gateway sizes it instead by what the collector costs: the headroom
// that keeps collections under gcCPUShare of a core, from the recent
// allocation rate and CPU per collection, between a floor and a quarter
// of the live heap plus gcHeadroomBase. Calls alone, which allocate
// about 10 KB a second each, run at the floor: a collection every few
// seconds at 60 calls, half a percent of a core for all, where a larger
// headroom would hold a heap's worth of dead objects (and spans that
// keep a few live ones) for nothing. A chat at full speed, which
// allocates fast, runs at the quarter. Until a collection has been seen,
// and so its cost is not known, the headroom is the most. An operator's
// GOGC in the environment turns this off (docs/operations.md).
const (
	gcHeadroomFloor    = 1 << 20 // bytes
	gcHeadroomBase     = 8 << 20 // bytes
	gcHeadroomFraction = 0.25
	gcCPUShare         = 0.01 // of one core
	gcPercentMax       = 1000
	// gcHeapMinimum is the runtime's heap minimum at GOGC=100.
	gcHeapMinimum = 4 << 20 // bytes
	// gcTuneEvery is how often the tuner reads the runtime: often enough
	// that a burst of allocation (a chat starting at full speed) finds
	// the headroom raised within a tenth of a second, not after a second
	// of collections at the floor.
	gcTuneEvery = 100 * time.Millisecond
	// gcRateWindow is the span the allocation rate is measured over.
	gcRateWindow = time.Second
	// gcRateMemory is how long a burst of allocation keeps the headroom
	// up after it stopped (the smoothing of the rate going down; going up
	// it follows at once).
	gcRateMemory = 10 * time.Second
)

// gcReading is what the tuner reads of the runtime at each check: the
// live heap and three cumulative counters.
type gcReading struct {
	live   uint64  // /gc/heap/live:bytes
	allocs uint64  // /gc/heap/allocs:bytes
	gcCPU  float64 // /cpu/classes/gc/total:cpu-seconds
	cycles uint64  // /gc/cycles/total:gc-cycles
}

// gcPacer turns successive readings into the collector's percentage.
type gcPacer struct {
	prev gcReading
	have bool
	// past holds the allocation counter at readings of the last
	// gcRateWindow, oldest first, with their time since the first one.
	past []allocMark
	now  time.Duration
	rate float64 // bytes allocated a second
	cost float64 // CPU seconds per collection; 0 until one was seen
}

type allocMark struct {
	allocs uint64
	at     time.Duration
}

// next takes a reading dt after the previous one and returns the GOGC
// percentage for the headroom it calls for.
//
// The rate is measured over the last gcRateWindow, however often the
// readings come: a short blip of allocation (a metrics scrape, one call
// set up) counts for what it is over a second, while a sustained burst
// raises it within a few readings.
func (p *gcPacer) next(r gcReading, dt time.Duration) int {
	if p.have && r.allocs < p.prev.allocs { // a counter went back: start over
		p.past = p.past[:0]
	}
	if p.have && dt > 0 && r.allocs >= p.prev.allocs {
		p.now += dt
		from := p.past[0]
		for len(p.past) > 1 && p.now-p.past[1].at >= gcRateWindow {
			p.past = p.past[1:]
			from = p.past[0]
		}
		rate := float64(r.allocs-from.allocs) / (p.now - from.at).Seconds()
		keep := math.Exp(-dt.Seconds() / gcRateMemory.Seconds())
		p.rate = max(rate, keep*p.rate+(1-keep)*rate)
		if n := r.cycles - p.prev.cycles; r.cycles > p.prev.cycles && r.gcCPU >= p.prev.gcCPU {
			c := (r.gcCPU - p.prev.gcCPU) / float64(n)
			if p.cost == 0 {
				p.cost = c
			} else {
				p.cost = (p.cost + c) / 2
			}
		}
	}
	if len(p.past) == 0 || r.allocs >= p.prev.allocs {
		p.past = append(p.past, allocMark{r.allocs, p.now})
	}
	p.prev, p.have = r, true
	return gcPercentFor(r.live, p.rate, p.cost)
}

// gcPercentFor returns the GOGC percentage that gives a heap of live
// bytes, allocating rate bytes a second with cost CPU seconds per
// collection (0: not known yet), the headroom above.
//
// The runtime never collects below a heap minimum of 4 MiB scaled by the
// percentage, so a percentage above 100 for a small live heap would give
// a heap far larger than the headroom asked for (at 1000, 40 MiB); the
// percentage is capped so that this minimum stays at the heap wanted.
// Before the first collection the live heap is not known (0): Go's
// default, whose first collection comes at 4 MiB, until it is.
func gcPercentFor(live uint64, rate, cost float64) int {
	if live == 0 {
		return 100
	}
	most := gcHeadroomBase + gcHeadroomFraction*float64(live)
	headroom := most
	if cost > 0 {
		headroom = min(max(cost*rate/gcCPUShare, gcHeadroomFloor), most)
	}
	p := math.Ceil(100 * headroom / float64(live))
	p = min(p, math.Floor(100*(float64(live)+headroom)/gcHeapMinimum))
	return int(max(1, min(p, gcPercentMax)))
}

// tuneGC keeps the collector's percentage at what gcPacer says, checked
// every gcTuneEvery, until ctx ends. It does nothing when GOGC is set in
// the environment.
func tuneGC(ctx context.Context, log *slog.Logger) {
	samples := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/gc/cycles/total:gc-cycles"},
	}
	tuneGCWith(ctx, log, gcTuneEvery, func() (gcReading, bool) {
		metrics.Read(samples)
		for i, s := range samples {
			want := metrics.KindUint64
			if i == 2 {
				want = metrics.KindFloat64
			}
			if s.Value.Kind() != want {
				return gcReading{}, false
			}
		}
		return gcReading{
			live:   samples[0].Value.Uint64(),
			allocs: samples[1].Value.Uint64(),
			gcCPU:  samples[2].Value.Float64(),
			cycles: samples[3].Value.Uint64(),
		}, true
	})
}

// tuneGCWith is tuneGC taking its readings from read, every every.
func tuneGCWith(ctx context.Context, log *slog.Logger, every time.Duration, read func() (gcReading, bool)) {
	if _, set := os.LookupEnv("GOGC"); set {
		log.Info("garbage collector left to GOGC", "GOGC", os.Getenv("GOGC"))
		return
	}
	current := -1
	var pacer gcPacer
	last := time.Now()
	apply := func() {
		r, ok := read()
		if !ok {
			return
		}
		now := time.Now()
		p := pacer.next(r, now.Sub(last))
		last = now
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
