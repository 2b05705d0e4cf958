package mediaclock

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the CPU time the process used so far (user + system).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkClock compares what keeping time costs for N legs: a goroutine
// and a 20 ms ticker per leg (as each RTP session and peer had), against
// the shared clock. Each iteration is one second of wall time (50 frames
// per leg); the leg's own work is a counter, so the figures are the
// clock's overhead alone. cpu-%/100legs is the share of one core that
// keeping time for 100 legs costs.
func BenchmarkClock(b *testing.B) {
	for _, n := range []int{100, 500} {
		b.Run(fmt.Sprintf("tickers/legs=%d", n), func(b *testing.B) {
			var frames atomic.Uint64
			quit := make(chan struct{})
			var wg sync.WaitGroup
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					t := time.NewTicker(Frame)
					defer t.Stop()
					for {
						select {
						case <-quit:
							return
						case <-t.C:
							frames.Add(1)
						}
					}
				}()
			}
			measure(b, n, &frames)
			close(quit)
			wg.Wait()
		})
		b.Run(fmt.Sprintf("shared/legs=%d", n), func(b *testing.B) {
			var frames atomic.Uint64
			c := New(0)
			var legs []*Leg
			for range n {
				legs = append(legs, c.Register(func(run, _ int) { frames.Add(uint64(run)) }))
			}
			measure(b, n, &frames)
			for _, l := range legs {
				l.Stop()
			}
		})
	}
}

func measure(b *testing.B, n int, frames *atomic.Uint64) {
	time.Sleep(100 * time.Millisecond) // every leg started
	b.ResetTimer()
	cpu0, f0, t0 := cpuTime(b), frames.Load(), time.Now()
	for range b.N {
		time.Sleep(time.Second)
	}
	cpu, f, wall := cpuTime(b)-cpu0, frames.Load()-f0, time.Since(t0)
	b.StopTimer()
	b.ReportMetric(float64(cpu)/float64(wall)*100*100/float64(n), "cpu-%/100legs")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(f), "cpu-ns/frame")
	b.ReportMetric(float64(f)/wall.Seconds()/float64(n), "frames/s/leg")
}
