package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// scenario is one measured run: N customers against one target.
type scenario struct {
	label string
	calls int
	ramp  float64       // call starts per second
	hold  time.Duration // how long every call is held once all are up
	pcmu  bool          // customers offer PCMU only
	// wideOnly has the customers send full-band Opus even when the answer
	// asks for narrowband.
	wideOnly bool
	// ownSockets gives each customer a UDP socket of its own (against a
	// gateway whose peers share one port).
	ownSockets bool
	// setupTimeout bounds one call's set-up (chat, voice.start → connected).
	setupTimeout time.Duration
	// settle is how long after a call's first returned audio its quality
	// window starts: frames still filling the target's buffers then are
	// not the steady state being measured.
	settle time.Duration
	target target
	// pid is the process whose CPU and memory are measured (0: none);
	// metricsURL its Prometheus page for goroutines (empty: none).
	pid        int
	metricsURL string
	// profileDir, when set with metricsURL, receives the target's CPU
	// profile of the steady window and its heap profile at its end.
	profileDir string
	progress   io.Writer
}

// target is what the customers call: the gateway through its API, or
// rtpengine through its ng protocol.
type target interface {
	// prepare runs once before the first call (agents sign in).
	prepare(ctx context.Context) error
	// setup places call c and returns once it is connected, with c's
	// times set, or an error whose text is the failure's reason.
	setup(ctx context.Context, c *call) (leg, error)
}

// leg is a placed call on the target's side.
type leg interface {
	// hangup ends the call.
	hangup(ctx context.Context)
	// record returns the target's own record of the call, if it keeps one.
	record(ctx context.Context) *callRecord
}

// placed is a call with its leg, or the reason it failed.
type placed struct {
	c   *call
	leg leg
	err error
}

// runScenario runs s and returns its report.
func runScenario(ctx context.Context, s scenario) (*report, error) {
	gen, err := newGenerator(genOptions{pcmu: s.pcmu, wideOnly: s.wideOnly, ownSockets: s.ownSockets})
	if err != nil {
		return nil, err
	}
	defer gen.close()
	stopSend := make(chan struct{})
	var sendWG sync.WaitGroup
	sendWG.Add(1)
	go func() { defer sendWG.Done(); gen.send(stopSend) }()
	defer func() { close(stopSend); sendWG.Wait() }()

	r := &report{label: s.label, attempted: s.calls, failures: map[string]int{}, settle: s.settle, refusedMetric: map[string]float64{}, droppedMetric: -1, droppedBy: map[string]float64{}}
	if s.pid > 0 {
		time.Sleep(500 * time.Millisecond)
		idle, err := sampleProc(s.pid)
		if err != nil {
			return nil, fmt.Errorf("gateway process: %w", err)
		}
		r.rssIdle, r.anonIdle = idle.rss, idle.anon
	}
	r.goroutinesIdle = goroutines(ctx, s.metricsURL)
	if err := s.target.prepare(ctx); err != nil {
		return nil, err
	}

	var established, failed atomic.Int64
	results := make([]placed, s.calls)
	var wg sync.WaitGroup
	start := time.Now()
	progressDone := make(chan struct{})
	var progWG sync.WaitGroup
	progWG.Add(1)
	go func() {
		defer progWG.Done()
		s.printProgress(start, gen, &established, &failed, progressDone)
	}()
	for i := range s.calls {
		slot := start.Add(time.Duration(float64(i) / s.ramp * float64(time.Second)))
		select {
		case <-time.After(time.Until(slot)):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := gen.newCall(i)
			if err != nil {
				results[i] = placed{err: err}
				failed.Add(1)
				return
			}
			sctx, cancel := context.WithTimeout(ctx, s.setupTimeout)
			defer cancel()
			l, err := s.target.setup(sctx, c)
			results[i] = placed{c: c, leg: l, err: err}
			if err != nil {
				failed.Add(1)
			} else {
				established.Add(1)
			}
		}()
	}
	wg.Wait()
	allUp := time.Now()
	r.rampTime = allUp.Sub(start)

	// Steady state: every call that could be set up is up.
	time.Sleep(time.Second)
	var a, b, selfA, selfB procSample
	if s.pid > 0 {
		a, _ = sampleProc(s.pid)
	}
	selfA, _ = sampleProc(os.Getpid())
	heapA := heapCounters(ctx, s.metricsURL)
	prof := s.startProfile(ctx)
	select {
	case <-time.After(s.hold):
	case <-ctx.Done():
	}
	if s.pid > 0 {
		b, _ = sampleProc(s.pid)
		r.gwCPU = cpuShare(a, b)
		r.rssLoaded, r.anonLoaded = b.rss, b.anon
	}
	selfB, _ = sampleProc(os.Getpid())
	r.genCPU = cpuShare(selfA, selfB)
	r.steady = b.at.Sub(a.at)
	if s.pid == 0 {
		r.steady = selfB.at.Sub(selfA.at)
	}
	r.goroutinesLoaded = goroutines(ctx, s.metricsURL)
	r.heap = heapCounters(ctx, s.metricsURL).since(heapA)
	if err := prof.wait(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "callload: profile:", err)
	}
	close(progressDone)
	progWG.Wait()

	// Stop the microphones, let the last returned audio arrive, hang up.
	for _, p := range results {
		if p.c != nil {
			p.c.stop()
		}
	}
	time.Sleep(400 * time.Millisecond)
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	for _, p := range results {
		if p.leg == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); p.leg.hangup(hctx) }()
	}
	wg.Wait()
	for _, p := range results {
		if p.c != nil {
			p.c.close()
		}
	}
	time.Sleep(300 * time.Millisecond) // the gateway writes its call records
	for _, p := range results {
		if p.leg == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); p.c.record = p.leg.record(hctx) }()
	}
	wg.Wait()
	if s.metricsURL != "" {
		if m, err := scrapeMetrics(hctx, s.metricsURL); err == nil {
			r.readMetrics(m)
		}
	}
	r.add(results)
	return r, nil
}

func (s scenario) printProgress(start time.Time, gen *generator, up, failed *atomic.Int64, done <-chan struct{}) {
	if s.progress == nil {
		return
	}
	tk := time.NewTicker(2 * time.Second)
	defer tk.Stop()
	var last procSample
	if s.pid > 0 {
		last, _ = sampleProc(s.pid)
	}
	for {
		select {
		case <-done:
			return
		case <-tk.C:
		}
		gen.mu.Lock()
		media := len(gen.active)
		var good uint64
		for _, c := range gen.active {
			good += c.goodFrames.Load()
		}
		gen.mu.Unlock()
		cpu := ""
		if s.pid > 0 {
			now, err := sampleProc(s.pid)
			if err == nil {
				cpu = fmt.Sprintf("  target cpu %.0f%% rss %d MB", 100*cpuShare(last, now), now.rss>>20)
				last = now
			}
		}
		fmt.Fprintf(s.progress, "[%s] %5.1fs  connected %d/%d  failed %d  sending %d  marker frames back %d%s\n",
			s.label, time.Since(start).Seconds(), up.Load(), s.calls, failed.Load(), media, good, cpu)
	}
}

// heapWindow is what the target's Go heap did over the steady window,
// from its Go collector's metrics.
type heapWindow struct {
	ok        bool
	allocated float64 // bytes allocated (go_memstats_alloc_bytes_total)
	gcs       float64 // collections (go_gc_duration_seconds_count)
	goal      float64 // heap size of the next collection at the end (go_memstats_next_gc_bytes)
	gcCPU     float64 // CPU seconds of the collector (go_cpu_classes_gc_total_cpu_seconds_total)
}

// heapCounters reads the target's allocation and collection counters.
func heapCounters(ctx context.Context, url string) heapWindow {
	if url == "" {
		return heapWindow{}
	}
	m, err := scrapeMetrics(ctx, url)
	if err != nil {
		return heapWindow{}
	}
	alloc, ok := m["go_memstats_alloc_bytes_total"]
	return heapWindow{ok: ok, allocated: alloc, gcs: m["go_gc_duration_seconds_count"], goal: m["go_memstats_next_gc_bytes"],
		gcCPU: m["go_cpu_classes_gc_total_cpu_seconds_total"]}
}

// since returns the counters' growth from a to h, with h's heap goal.
func (h heapWindow) since(a heapWindow) heapWindow {
	if !h.ok || !a.ok {
		return heapWindow{}
	}
	return heapWindow{ok: true, allocated: h.allocated - a.allocated, gcs: h.gcs - a.gcs, goal: h.goal, gcCPU: h.gcCPU - a.gcCPU}
}

func goroutines(ctx context.Context, url string) int {
	if url == "" {
		return 0
	}
	m, err := scrapeMetrics(ctx, url)
	if err != nil {
		return 0
	}
	return int(m["go_goroutines"])
}

// report is what one scenario measured.
type report struct {
	label       string
	attempted   int
	established int
	failures    map[string]int
	rampTime    time.Duration
	steady      time.Duration

	setupConnected []time.Duration // voice.start → connected
	setupAudio     []time.Duration // voice.start → first returned frame with the marker
	bad            []float64       // per call, share of frames without the marker
	gaps           []time.Duration // per call, longest gap
	sentUp         uint64          // packets the customers sent
	lostUp         int64           // of them, lost as the far end's reports say
	reportsUp      int             // calls with a receiver report
	recvDown       uint64          // packets returned to customers
	lostDown       uint64          // of them, missing by sequence number

	gwCPU            float64 // share of one core over the steady window
	genCPU           float64
	rssIdle          int64
	rssLoaded        int64
	anonIdle         int64 // of rssIdle, anonymous memory
	anonLoaded       int64
	goroutinesIdle   int
	goroutinesLoaded int
	heap             heapWindow // over the steady window

	records    int     // gateway call records read
	recLoss    float64 // mean loss_percent
	recMOS     float64 // mean MOS
	recSentPct float64 // packets sent toward the phone, % of 50/s while answered

	settle time.Duration // the quality window starts this long after the first returned audio
	rtts   []time.Duration

	refused    int   // voice.start answered busy
	retryAfter []int // their retry_after, seconds
	// refusedMetric is segue_calls_refused_total by reason, droppedMetric
	// the sum of segue_media_frames_dropped_total (-1: not read) and
	// droppedBy its series by their labels.
	refusedMetric map[string]float64
	droppedMetric float64
	droppedBy     map[string]float64
	cross         []crossCheck
}

// crossCheck sets, for one call, the bad frames the generator measured
// beside what the gateway's call record says of the same call.
type crossCheck struct {
	idx       int
	generator float64 // share of frames bad, as measured
	due       int     // frames the record's answered time asks for, each way
	dropPhone uint64
	dropCust  uint64
	gwLoss    float64 // gateway_loss_percent
	netPhone  float64 // loss_percent, the phone's RTP toward the gateway
	netCust   float64 // browser_loss_percent, the customer's toward it
}

// gateway is the share of frames bad on the round trip as the record
// tells it: a frame comes back when neither the gateway (either way) nor
// either leg's network lost it, each counted over the frames due.
func (x crossCheck) gateway() float64 {
	kept := (1 - x.netPhone/100) * (1 - x.netCust/100)
	if x.due > 0 {
		kept *= max(0, 1-float64(x.dropPhone)/float64(x.due)) * max(0, 1-float64(x.dropCust)/float64(x.due))
	}
	return 1 - kept
}

// readMetrics keeps the admission and drop counters of the target's
// Prometheus page.
func (r *report) readMetrics(m map[string]float64) {
	r.droppedMetric = 0
	for k, v := range m {
		switch {
		case strings.HasPrefix(k, "segue_media_frames_dropped_total"):
			r.droppedMetric += v
			if v > 0 {
				r.droppedBy[strings.TrimPrefix(k, "segue_media_frames_dropped_total")] += v
			}
		case strings.HasPrefix(k, "segue_calls_refused_total{"):
			reason := k
			if i := strings.Index(k, `reason="`); i >= 0 {
				reason = strings.TrimSuffix(k[i+len(`reason="`):], `"}`)
			}
			r.refusedMetric[reason] += v
		}
	}
}

func (r *report) add(results []placed) {
	var recs []*callRecord
	for _, p := range results {
		if p.err != nil {
			r.failures[reason(p.err)]++
			var busy *busyError
			if errors.As(p.err, &busy) {
				r.refused++
				r.retryAfter = append(r.retryAfter, busy.retryAfter)
			}
			continue
		}
		c := p.c
		r.established++
		r.setupConnected = append(r.setupConnected, c.connected.Sub(c.started))
		from := time.Unix(0, c.firstAudio.Load())
		bad := 1.0
		if c.firstAudio.Load() == 0 {
			r.gaps = append(r.gaps, c.stopped.Sub(c.connected))
		} else {
			r.setupAudio = append(r.setupAudio, from.Sub(c.started))
			var gap time.Duration
			_, _, bad, gap = c.frames.judge(from.Add(r.settle), c.stopped)
			r.gaps = append(r.gaps, gap)
		}
		r.bad = append(r.bad, bad)
		r.rtts = append(r.rtts, c.rtts...)
		r.sentUp += c.sent.Load()
		if c.rrSeen.Load() {
			r.reportsUp++
			r.lostUp += c.rrLost.Load()
		}
		lost, expected := c.rx.lost()
		r.recvDown += expected - lost
		r.lostDown += lost
		if rec := c.record; rec != nil {
			recs = append(recs, rec)
			x := crossCheck{idx: c.idx, generator: bad, dropPhone: rec.Quality.FramesDroppedToPhone, dropCust: rec.Quality.FramesDroppedToCustomer,
				gwLoss: rec.Quality.GatewayLossPercent, netPhone: rec.Quality.LossPercent, netCust: rec.Quality.BrowserLossPercent}
			if rec.AnsweredAt != nil && rec.EndedAt != nil {
				x.due = int(rec.EndedAt.Sub(*rec.AnsweredAt) / frameDur)
			}
			r.cross = append(r.cross, x)
		}
	}
	for _, rec := range recs {
		r.records++
		r.recLoss += rec.Quality.LossPercent
		r.recMOS += rec.Quality.MOS
		if rec.AnsweredAt != nil && rec.EndedAt != nil {
			if d := rec.EndedAt.Sub(*rec.AnsweredAt); d > 0 {
				r.recSentPct += 100 * float64(rec.Quality.PacketsSent) / (d.Seconds() * 50)
			}
		}
	}
	if r.records > 0 {
		r.recLoss /= float64(r.records)
		r.recMOS /= float64(r.records)
		r.recSentPct /= float64(r.records)
	}
}

// reason shortens an error to a failure class: the text before any
// per-call detail in parentheses.
func reason(err error) string {
	s := err.Error()
	if i := strings.Index(s, " ("); i > 0 {
		s = s[:i]
	}
	return s
}

// heldUnder returns how many calls had fewer than limit of their frames bad.
func (r *report) heldUnder(limit float64) int {
	n := 0
	for _, b := range r.bad {
		if b < limit {
			n++
		}
	}
	return n
}

// cpuPerCall is the share of one core per established call.
func (r *report) cpuPerCall() float64 {
	if r.established == 0 {
		return 0
	}
	return r.gwCPU / float64(r.established)
}

// rssPerCall is the target's RSS above idle per established call, MB.
func (r *report) rssPerCall() float64 {
	if r.established == 0 || r.rssLoaded == 0 {
		return 0
	}
	return float64(r.rssLoaded-r.rssIdle) / float64(r.established) / (1 << 20)
}

// anonPerCall is the same for anonymous memory alone (procMem), MB.
func (r *report) anonPerCall() float64 {
	if r.established == 0 || r.anonLoaded == 0 {
		return 0
	}
	return float64(r.anonLoaded-r.anonIdle) / float64(r.established) / (1 << 20)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	return s[(len(s)-1)/2]
}

// print writes the report.
func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "== %s\n", r.label)
	fmt.Fprintf(w, "calls: attempted %d, established %d, failed %d (all up after %.1fs, steady window %.1fs)\n",
		r.attempted, r.established, r.attempted-r.established, r.rampTime.Seconds(), r.steady.Seconds())
	printFailures(w, r.failures)
	if r.refused > 0 || len(r.refusedMetric) > 0 {
		fmt.Fprintf(w, "admission: %d of %d refused busy (retry_after %s s); the gateway counted refusals %s; admitted calls under 1%% bad frames: %d of %d\n",
			r.refused, r.attempted, intRange(r.retryAfter), formatCounts(r.refusedMetric), r.heldUnder(0.01), r.established)
	}
	fmt.Fprintf(w, "set-up p50/p95/p99: voice.start → connected %s; → first returned audio %s\n", quantiles(r.setupConnected), quantiles(r.setupAudio))
	fmt.Fprintf(w, "round trip through both transcodings and the echo (onset of a 2 kHz ping every 2 s, %d pings): p50 %s, p99 %s\n",
		len(r.rtts), ms(percentile(r.rtts, 0.5)), ms(percentile(r.rtts, 0.99)))
	fmt.Fprintf(w, "quality window: from %s after each call's first returned audio (frames still filling the buffers before that are not counted) until its microphone stopped\n", ms(r.settle))
	worst := 0.0
	for _, b := range r.bad {
		worst = max(worst, b)
	}
	var gaps []time.Duration
	gaps = append(gaps, r.gaps...)
	fmt.Fprintf(w, "audio by content: frames without the marker, median call %.2f%%, worst call %.2f%%; calls under 1%%: %d of %d; longest gap p50 %s, max %s\n",
		100*median(r.bad), 100*worst, r.heldUnder(0.01), r.established, ms(percentile(gaps, 0.5)), ms(percentile(gaps, 1)))
	up := "no receiver reports"
	if r.reportsUp > 0 && r.sentUp > 0 {
		up = fmt.Sprintf("%.2f%% (%d of %d, from the far end's RTCP reports of %d calls)", 100*float64(r.lostUp)/float64(r.sentUp), r.lostUp, r.sentUp, r.reportsUp)
	}
	down := "none received"
	if r.recvDown+r.lostDown > 0 {
		down = fmt.Sprintf("%.2f%% (%d of %d, by sequence number)", 100*float64(r.lostDown)/float64(r.recvDown+r.lostDown), r.lostDown, r.recvDown+r.lostDown)
	}
	fmt.Fprintf(w, "packet loss: toward the target %s; toward the customers %s\n", up, down)
	if r.rssLoaded > 0 {
		fmt.Fprintf(w, "target process: CPU %.1f%% of a core, %.2f%% per call; RSS %.1f MB idle, %.1f MB loaded, %.2f MB per call; anonymous memory (RssAnon) %.1f → %.1f MB, %.2f MB per call\n",
			100*r.gwCPU, 100*r.cpuPerCall(), float64(r.rssIdle)/(1<<20), float64(r.rssLoaded)/(1<<20), r.rssPerCall(),
			float64(r.anonIdle)/(1<<20), float64(r.anonLoaded)/(1<<20), r.anonPerCall())
	}
	if r.goroutinesLoaded > 0 {
		fmt.Fprintf(w, "goroutines: %d idle, %d loaded (%.1f per call)\n", r.goroutinesIdle, r.goroutinesLoaded, float64(r.goroutinesLoaded-r.goroutinesIdle)/float64(max(1, r.established)))
	}
	if r.heap.ok && r.established > 0 && r.steady > 0 {
		fmt.Fprintf(w, "target heap: %.1f KB allocated a second per call, %.0f collections in %s (%.2f%% of a core), next at %.1f MB\n",
			r.heap.allocated/r.steady.Seconds()/float64(r.established)/1000, r.heap.gcs, r.steady.Round(time.Second),
			100*r.heap.gcCPU/r.steady.Seconds(), r.heap.goal/(1<<20))
	}
	genPer := 0.0
	if r.established > 0 {
		genPer = r.genCPU / float64(r.established)
	}
	fmt.Fprintf(w, "generator: CPU %.1f%% of a core, %.2f%% per call\n", 100*r.genCPU, 100*genPer)
	if r.records > 0 {
		fmt.Fprintf(w, "the gateway's own call records (%d): loss %.2f%% (phone side), MOS %.2f, packets sent toward the phone %.1f%% of 50/s; the generator measured %.2f%% of frames bad (mean)\n",
			r.records, r.recLoss, r.recMOS, r.recSentPct, 100*mean(r.bad))
		r.printCross(w)
	}
}

// printFailures writes one line per failure class, in order, with its
// count.
func printFailures(w io.Writer, failures map[string]int) {
	reasons := make([]string, 0, len(failures))
	for k := range failures {
		reasons = append(reasons, k)
	}
	sort.Strings(reasons)
	for _, k := range reasons {
		fmt.Fprintf(w, "  failed %d× %s\n", failures[k], k)
	}
}

// crossLimit is how far, in shares of frames, the gateway's account of a
// call's bad frames may be from the generator's before it is flagged.
const crossLimit = 0.01

// printCross writes the cross-check: per call, the generator's bad frames
// beside the gateway's, and a flag line for each call where they differ
// by more than a point.
func (r *report) printCross(w io.Writer) {
	var drops uint64
	flagged := 0
	fmt.Fprintf(w, "cross-check, per call: generator's bad frames | gateway: dropped toward the phone / the customer of frames due, gateway_loss_percent, network loss phone / browser side → its bad share\n")
	for _, x := range r.cross {
		drops += x.dropPhone + x.dropCust
		fmt.Fprintf(w, "  call %3d: %6.2f%% | %d / %d of %d, %.2f%%, %.2f%% / %.2f%% → %6.2f%%\n",
			x.idx, 100*x.generator, x.dropPhone, x.dropCust, x.due, x.gwLoss, x.netPhone, x.netCust, 100*x.gateway())
		if d := x.generator - x.gateway(); d > crossLimit || d < -crossLimit {
			flagged++
			fmt.Fprintf(w, "  FLAG call %d: the generator measured %.2f%% bad frames, the gateway accounts for %.2f%%: %+.2f points\n",
				x.idx, 100*x.generator, 100*x.gateway(), 100*d)
		}
	}
	metric := "not read"
	if r.droppedMetric >= 0 {
		metric = fmt.Sprintf("%.0f (%s)", r.droppedMetric, formatCounts(r.droppedBy))
	}
	fmt.Fprintf(w, "cross-check: %d of %d calls differ by more than a point; frames dropped in the records %d, segue_media_frames_dropped_total %s\n",
		flagged, len(r.cross), drops, metric)
}

// intRange formats the least and greatest of xs ("60" or "1-60").
func intRange(xs []int) string {
	if len(xs) == 0 {
		return "none"
	}
	lo, hi := slices.Min(xs), slices.Max(xs)
	if lo == hi {
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

// formatCounts formats counts by key, sorted ("max_calls 10, cpu 1").
func formatCounts(m map[string]float64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %.0f", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
