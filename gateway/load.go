package gateway

import (
	"context"
	"math"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segue-rtc/segue/mediaclock"
	"github.com/segue-rtc/segue/sip"
)

// Load-based admission: past limits.max_calls, or while the process is
// overloaded (limits.max_media_late_percent, limits.max_scheduler_lag,
// limits.max_cpu_percent), a new call
// is refused with errAllBusy (the widget says all lines are busy; a PBX's
// INVITE gets 503 with Retry-After) and the calls in progress go on.

const (
	// loadInterval is how often the load monitor wakes to measure.
	loadInterval = 50 * time.Millisecond
	// lagSmoothing is the weight of each new lag sample in the moving
	// average (1/8: about the last 400 ms count).
	lagSmoothing = 1.0 / 8
	// cpuWindow is the span over which the process's CPU use is measured.
	cpuWindow = time.Second
	// lateWindow is the span over which the media clock's lateness is
	// measured: long enough that one garbage collection or one slow tick
	// does not refuse calls, short enough that admission reacts within
	// two seconds of an overload and recovers as soon after it.
	lateWindow = 2 * time.Second
	// busyRetryAfter is the retry_after, in seconds, of a call refused
	// for capacity: the same minute a PBX is told in its 503.
	busyRetryAfter = sip.LimitRetryAfter
	// busyNoteEvery is the least time between two voice.refused events of
	// one conversation.
	busyNoteEvery = time.Minute
)

// loadSample is what the load monitor last measured.
type loadSample struct {
	// Lag is the smoothed scheduler lag: how much later than asked a
	// goroutine that sleeps for loadInterval gets to run. It grows when
	// the process has more runnable work than CPU, whatever the cause (its
	// own calls or other processes on the machine).
	Lag time.Duration
	// CPU is the process's CPU time over the last cpuWindow as a share of
	// the cores it may use (GOMAXPROCS), 0 to 1; negative when unknown.
	CPU float64
	// MediaLate is the share, 0 to 1, of the media clock's frame times
	// over the last lateWindow that it served more than a frame late (in
	// a catch-up burst) or skipped: the calls' own audio falling behind,
	// whatever keeps the process from the CPU it needs (its own calls,
	// other processes on its core). 0 while no call carries audio.
	MediaLate float64
}

// loadSource reports the gateway's current load; the call admission check
// reads it. Load must be cheap and safe for concurrent use.
type loadSource interface {
	Load() loadSample
}

// loadMonitor measures scheduler lag with a goroutine that sleeps for
// loadInterval and compares when it woke with when it asked to, and the
// process's CPU use from the operating system's accounting.
type loadMonitor struct {
	// cpuTime is the CPU time the process has used so far (user and
	// system); ok is false where the platform does not say.
	cpuTime func() (d time.Duration, ok bool)
	cores   int
	// clock reads the counters of the media clock the calls run on.
	clock func() mediaclock.Stats

	lag  atomic.Int64  // smoothed lag, ns
	cpu  atomic.Uint64 // math.Float64bits of loadSample.CPU
	late atomic.Uint64 // math.Float64bits of loadSample.MediaLate

	// Owned by the Run goroutine.
	smoothed  float64
	cpuAt     time.Time
	cpuBefore time.Duration
	// clockSeen are the media clock's counters as sampled, oldest first,
	// covering lateWindow (the oldest at or before its start).
	clockSeen []clockSample
}

// clockSample is the media clock's counters at one instant.
type clockSample struct {
	at         time.Time
	due, ticks uint64
}

func newLoadMonitor() *loadMonitor {
	m := &loadMonitor{cpuTime: processCPUTime, cores: runtime.GOMAXPROCS(0), clock: mediaclock.Shared().Stats}
	m.cpu.Store(math.Float64bits(-1))
	return m
}

// Load implements loadSource.
func (m *loadMonitor) Load() loadSample {
	return loadSample{Lag: time.Duration(m.lag.Load()), CPU: math.Float64frombits(m.cpu.Load()),
		MediaLate: math.Float64frombits(m.late.Load())}
}

// Run measures until ctx ends.
func (m *loadMonitor) Run(ctx context.Context) {
	t := time.NewTimer(loadInterval)
	defer t.Stop()
	due := time.Now().Add(loadInterval)
	m.observeCPU(time.Now())
	m.observeClock(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		m.observeLag(now.Sub(due))
		m.observeCPU(now)
		m.observeClock(now)
		due = now.Add(loadInterval)
		t.Reset(loadInterval)
	}
}

// observeLag adds one lag sample (how late a wake-up was) to the moving
// average.
func (m *loadMonitor) observeLag(late time.Duration) {
	m.smoothed += (float64(max(late, 0)) - m.smoothed) * lagSmoothing
	m.lag.Store(int64(m.smoothed))
}

// observeCPU updates the CPU share once cpuWindow has passed since the
// last update; the first call only takes the starting point.
func (m *loadMonitor) observeCPU(now time.Time) {
	used, ok := m.cpuTime()
	if !ok {
		return
	}
	if m.cpuAt.IsZero() {
		m.cpuAt, m.cpuBefore = now, used
		return
	}
	wall := now.Sub(m.cpuAt)
	if wall < cpuWindow {
		return
	}
	share := float64(used-m.cpuBefore) / (float64(wall) * float64(max(m.cores, 1)))
	m.cpu.Store(math.Float64bits(min(max(share, 0), 1)))
	m.cpuAt, m.cpuBefore = now, used
}

// observeClock samples the media clock's counters and updates the share
// of its frame times over the last lateWindow that were not served on
// time. Frame times in which no leg was registered do not count: an idle
// gateway is not late.
func (m *loadMonitor) observeClock(now time.Time) {
	st := m.clock()
	m.clockSeen = append(m.clockSeen, clockSample{at: now, due: st.Due, ticks: st.Ticks})
	// Keep the newest sample at or before the window's start as its base.
	start := now.Add(-lateWindow)
	drop := 0
	for drop+1 < len(m.clockSeen) && !m.clockSeen[drop+1].at.After(start) {
		drop++
	}
	m.clockSeen = m.clockSeen[drop:]
	first, last := m.clockSeen[0], m.clockSeen[len(m.clockSeen)-1]
	share := 0.0
	if due := last.due - first.due; due > 0 {
		share = float64(due-min(last.ticks-first.ticks, due)) / float64(due)
	}
	m.late.Store(math.Float64bits(share))
}

// admitCallLocked decides whether a new call may start now: it refuses
// past limits.max_calls and while the load is over
// limits.max_media_late_percent, limits.max_scheduler_lag or
// limits.max_cpu_percent, counting the refusal
// by reason; hub.mu held. Calls in progress are never touched.
func (s *Server) admitCallLocked() error {
	reason := ""
	l := s.cfg.Limits
	if s.hub.activeCallsLocked() >= l.MaxCalls {
		reason = "max_calls"
	} else if s.load != nil {
		load := s.load.Load()
		switch {
		case l.maxMediaLatePercent() > 0 && load.MediaLate*100 > float64(l.maxMediaLatePercent()):
			reason = "media_late"
		case l.maxSchedulerLag() > 0 && load.Lag > l.maxSchedulerLag():
			reason = "scheduler_lag"
		case l.MaxCPUPercent > 0 && load.CPU*100 > float64(l.MaxCPUPercent):
			reason = "cpu"
		}
	}
	if reason == "" {
		return nil
	}
	s.metrics.callsRefused.WithLabelValues(reason).Inc()
	s.log.Debug("voice: call refused for capacity", "reason", reason)
	return errAllBusy
}

// withLoad replaces the load monitor (tests).
func withLoad(l loadSource) Option { return func(s *Server) { s.load = l } }

// registerLoad exports what the load monitor measures.
func (m *metrics) registerLoad(l loadSource) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "segue_scheduler_lag_seconds",
			Help: "How late the gateway's goroutines wake, moving average (limits.max_scheduler_lag).",
		}, func() float64 { return l.Load().Lag.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "segue_cpu_share",
			Help: "The process's CPU use over the last second as a share of the cores it may use, 0 to 1; -1 when unknown (limits.max_cpu_percent).",
		}, func() float64 { return l.Load().CPU }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "segue_media_late_share",
			Help: "Share of the media clock's 20 ms frame times over the last 2 s served more than a frame late or skipped, 0 to 1 (limits.max_media_late_percent).",
		}, func() float64 { return l.Load().MediaLate }),
	)
}
