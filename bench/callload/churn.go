package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// churnOptions size a churn run (-churn): how many sessions of each kind
// are up at once, how long each lasts, and how far the gateway's figures
// may end above their baseline.
type churnOptions struct {
	calls, chats, videos int
	duration             time.Duration // how long new sessions start, per round
	rounds               int           // churns back to back, each followed by the check (0: 1)
	session              time.Duration // how long one session is held (±20 %)
	settle               time.Duration // longest wait for the figures to come back
	perKind              bool          // measure what one session of each kind costs first
	videoKbps            int
	maxLag               time.Duration // the gateway's limits.max_scheduler_lag
	maxLate              int           // the gateway's limits.max_media_late_percent (0: off)
	margins              margins
}

// churn is a running churn: the gateway's API, the customers' media and
// what the sessions measured.
type churn struct {
	o      options
	api    *chatAPI
	target *gatewayTarget
	gen    *generator
	video  *videoPeers

	mu         sync.Mutex
	kinds      map[string]*kindStats
	bad        []float64 // per call, share of frames back without the marker
	videoSent  int64
	videoRecvd int64
}

// kindStats counts the sessions of one kind.
type kindStats struct {
	started, ok int
	failures    map[string]int
}

// sessionFunc runs one session held for hold (or until release is
// closed); it calls ready once the session is up.
type sessionFunc func(ctx context.Context, idx int, hold time.Duration, ready func(), release <-chan struct{}) error

type kind struct {
	name  string
	lanes int
	run   sessionFunc
}

func (ch *churn) kindList() []kind {
	return []kind{
		{"call", ch.o.churn.calls, ch.callSession},
		{"chat", ch.o.churn.chats, ch.chatSession},
		{"video", ch.o.churn.videos, ch.videoSession},
	}
}

func (ch *churn) addCall(c *call) {
	bad := 1.0
	if from := c.firstAudio.Load(); from != 0 {
		_, _, bad, _ = c.frames.judge(time.Unix(0, from), c.stopped)
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.bad = append(ch.bad, bad)
}

func (ch *churn) addVideo(sent, received int64) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.videoSent += sent
	ch.videoRecvd += received
}

// one runs a session of k and counts its outcome.
func (ch *churn) one(ctx context.Context, k kind, idx int, hold time.Duration, ready func(), release <-chan struct{}) {
	ch.mu.Lock()
	st := ch.kinds[k.name]
	st.started++
	ch.mu.Unlock()
	err := k.run(ctx, idx, hold, ready, release)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if err == nil {
		st.ok++
		return
	}
	if ctx.Err() != nil {
		st.failures["interrupted"]++
		return
	}
	st.failures[reason(err)]++
	fmt.Fprintf(ch.o.progress, "%s %s session %d failed: %v\n", time.Now().Format("15:04:05.000"), k.name, idx, err)
}

// churnReport is what a churn run found.
type churnReport struct {
	per     map[string]resources // loaded with the per-kind round up
	idle    map[string]resources // just before each kind's round
	lanes   map[string]int
	base    resources
	peak    resources
	end     resources // the last round's
	settled time.Duration
	ends    []roundEnd // one per round
	// roundsDiff is the heap profile's diff between the ends of the first
	// and the last round, when there are several.
	roundsDiff    string
	roundsDiffErr error
	excess        []string
	diff          string
	diffErr       error
	elapsed       time.Duration
	failures      int
	// Copies of the sessions' counts, taken at the end.
	kinds      map[string]kindStats
	videoSent  int64
	videoRecvd int64
}

// roundEnd is the gateway's figures after one round of the churn.
type roundEnd struct {
	res     resources
	settled time.Duration
	excess  []string
	counts  string // sessions started so far
}

// runChurn starts the echo phone and a gateway and churns sessions
// through it, then compares the gateway's figures with their baseline.
func runChurn(ctx context.Context, o options, w io.Writer) (*churnReport, error) {
	co := o.churn
	if co.calls+co.chats+co.videos == 0 {
		return nil, errors.New("-churn: no sessions (-churn-calls, -churn-chats, -churn-videos all 0)")
	}
	env, err := newRunEnv(o, "callload-churn-")
	if err != nil {
		return nil, err
	}
	defer env.close()
	dir := env.dir
	if err := env.ensureBin(ctx, o.segueBin, "", o.build); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(o.segueBin)
	if err != nil {
		return nil, err
	}
	gwDir := filepath.Join(dir, "segue")
	if err := os.MkdirAll(gwDir, 0o755); err != nil {
		return nil, err
	}
	total := co.calls + co.chats + co.videos
	// A soak looks for leaks, not for the load at which the gateway turns
	// calls away: on a shared machine its scheduler lag passes the default
	// 20 ms often, so calls are admitted up to -max-scheduler-lag.
	config, url, admin, err := segueConfig(gwDir, env.phone.addr, o.agentCount, total,
		admission{maxCalls: total + 10, maxLag: co.maxLag.String(), maxLate: co.maxLate}, o.tune)
	if err != nil {
		return nil, err
	}
	gw, err := startSegue(gwDir, abs, config, url, admin, env.targetCPU)
	if err != nil {
		return nil, err
	}
	defer gw.stop()

	ch := &churn{o: o, api: newChatAPI(url), kinds: map[string]*kindStats{}}
	ch.target = &gatewayTarget{api: ch.api, password: benchAgentPassword}
	for i := range o.agentCount {
		ch.target.agents = append(ch.target.agents, fmt.Sprintf("%s%d", benchAgentPrefix, i+1))
	}
	for _, k := range ch.kindList() {
		ch.kinds[k.name] = &kindStats{failures: map[string]int{}}
	}
	if ch.gen, err = newGenerator(genOptions{pcmu: o.pcmu, wideOnly: o.wideOnly, ownSockets: o.tune.udpMux}); err != nil {
		return nil, err
	}
	defer ch.gen.close()
	stopSend := make(chan struct{})
	var sendWG sync.WaitGroup
	sendWG.Add(1)
	go func() { defer sendWG.Done(); ch.gen.send(stopSend) }()
	defer func() { close(stopSend); sendWG.Wait() }()
	if ch.video, err = newVideoPeers(); err != nil {
		return nil, err
	}
	defer ch.video.close()

	agentCtx, stopAgents := context.WithCancel(ctx)
	defer stopAgents()
	if err := ch.target.prepare(agentCtx); err != nil {
		return nil, err
	}
	r, err := ch.run(ctx, gw.pid(), admin, dir)
	if err != nil {
		return r, fmt.Errorf("%w\n%s", err, gw.tail())
	}
	if gw.exited() {
		return r, fmt.Errorf("the gateway exited during the run: %s", gw.tail())
	}
	r.print(w, ch)
	return r, nil
}

// sample reads the gateway's resources after closing the tool's idle
// HTTP connections, which would otherwise count among its descriptors.
func (ch *churn) sample(ctx context.Context, pid int, admin, profile string) (resources, error) {
	ch.api.hc.CloseIdleConnections()
	return sampleResources(ctx, pid, admin, profile)
}

func (ch *churn) run(ctx context.Context, pid int, admin, dir string) (*churnReport, error) {
	co := ch.o.churn
	r := &churnReport{per: map[string]resources{}, idle: map[string]resources{}, lanes: map[string]int{}}
	start := time.Now()
	progress := func(format string, args ...any) {
		fmt.Fprintf(ch.o.progress, "[churn %6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}

	// Warm-up: one round of every lane, kind by kind (measuring each
	// kind's cost with its round up), or all kinds together. What the
	// gateway allocates once (pools, caches, the heap's size) is then
	// part of the baseline rather than counted as a leak.
	rounds := [][]kind{ch.kindList()}
	if co.perKind {
		rounds = nil
		for _, k := range ch.kindList() {
			rounds = append(rounds, []kind{k})
		}
	}
	idx := 0
	for _, round := range rounds {
		var before resources
		var err error
		if co.perKind {
			if before, err = ch.sample(ctx, pid, admin, ""); err != nil {
				return r, err
			}
		}
		release := make(chan struct{})
		var up, done sync.WaitGroup
		for _, k := range round {
			for range k.lanes {
				idx++
				i := idx
				up.Add(1)
				done.Add(1)
				var once sync.Once
				ready := func() { once.Do(up.Done) }
				go func() {
					defer done.Done()
					defer ready()
					ch.one(ctx, k, i, time.Hour, ready, release)
				}()
			}
		}
		up.Wait()
		// Long enough for every call's audio to come back; a kind measured
		// alone is held as its sessions are (up to 20 s), so that what
		// fills up while a session lasts (jitter buffers, the video packet
		// caches that answer NACKs) counts in its cost.
		warm := 2 * time.Second
		if co.perKind {
			warm = max(warm, min(co.session, 20*time.Second))
		}
		holdFor(ctx, warm, nil)
		if co.perKind && round[0].lanes > 0 {
			loaded, err := ch.sample(ctx, pid, admin, "")
			if err != nil {
				close(release)
				done.Wait()
				return r, err
			}
			r.idle[round[0].name], r.per[round[0].name], r.lanes[round[0].name] = before, loaded, round[0].lanes
			progress("%d %s sessions up: %s", round[0].lanes, round[0].name, loaded)
		}
		close(release)
		done.Wait()
	}
	if err := ch.waitStable(ctx, pid, admin); err != nil {
		return r, err
	}
	basePath := filepath.Join(dir, "heap-base.pb.gz")
	var err error
	if r.base, err = ch.sample(ctx, pid, admin, basePath); err != nil {
		return r, err
	}
	progress("baseline: %s", r.base)

	// The churn, -churn-rounds times: each lane runs sessions back to
	// back, lanes of a kind staggered over one session's length, so that
	// sessions of every kind start and end at a steady rate. After each
	// round the figures must come back within their margins before the
	// settle time is out.
	r.peak = r.base
	var endPaths []string
	for round := 1; round <= max(1, co.rounds); round++ {
		ch.churnRound(ctx, pid, admin, r, &idx, progress)
		r.elapsed = time.Since(start)
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		progress("churn round %d over (%s); settling", round, ch.counts())
		endPath := filepath.Join(dir, fmt.Sprintf("heap-end-%d.pb.gz", round))
		e := roundEnd{counts: ch.counts()}
		settleStart := time.Now()
		for {
			holdFor(ctx, 2*time.Second, nil)
			if e.res, err = ch.sample(ctx, pid, admin, endPath); err != nil {
				return r, err
			}
			e.excess = co.margins.excess(r.base, e.res)
			e.settled = time.Since(settleStart)
			if len(e.excess) == 0 || e.settled >= co.settle || ctx.Err() != nil {
				break
			}
		}
		r.ends = append(r.ends, e)
		r.end, r.settled = e.res, e.settled
		for _, x := range e.excess {
			if co.rounds > 1 {
				x = fmt.Sprintf("round %d: %s", round, x)
			}
			r.excess = append(r.excess, x)
		}
		endPaths = append(endPaths, endPath)
	}
	endPath := endPaths[len(endPaths)-1]
	if len(endPaths) > 1 {
		r.roundsDiff, r.roundsDiffErr = profileDiff(ctx, endPaths[0], endPath, 18)
	}
	r.diff, r.diffErr = profileDiff(ctx, basePath, endPath, 18)
	ch.mu.Lock()
	r.kinds = map[string]kindStats{}
	for name, st := range ch.kinds {
		r.failures += st.started - st.ok
		r.kinds[name] = *st
	}
	r.videoSent, r.videoRecvd = ch.videoSent, ch.videoRecvd
	ch.mu.Unlock()
	return r, nil
}

// churnRound runs the lanes of every kind for the churn's duration,
// reading the gateway's figures now and then for the peak.
func (ch *churn) churnRound(ctx context.Context, pid int, admin string, r *churnReport, idx *int, progress func(string, ...any)) {
	co := ch.o.churn
	until := time.Now().Add(co.duration)
	var lanes sync.WaitGroup
	var seq sync.Mutex
	next := func() int { seq.Lock(); defer seq.Unlock(); *idx++; return *idx }
	for _, k := range ch.kindList() {
		for i := range k.lanes {
			lanes.Add(1)
			go func() {
				defer lanes.Done()
				holdFor(ctx, time.Duration(i)*co.session/time.Duration(k.lanes), nil)
				for time.Now().Before(until) && ctx.Err() == nil {
					hold := time.Duration(float64(co.session) * (0.8 + 0.4*rand.Float64()))
					t0 := time.Now()
					ch.one(ctx, k, next(), hold, func() {}, nil)
					// A session that failed early leaves its lane idle for
					// the rest of its time: the rate stays steady.
					holdFor(ctx, time.Until(t0.Add(hold)), nil)
				}
			}()
		}
	}
	churnDone := make(chan struct{})
	go func() { lanes.Wait(); close(churnDone) }()
	tk := time.NewTicker(min(10*time.Second, max(2*time.Second, co.duration/5)))
	defer tk.Stop()
	for {
		select {
		case <-churnDone:
			return
		case <-tk.C:
			s, err := sampleResources(ctx, pid, admin, "")
			if err == nil {
				r.peak = peakOf(r.peak, s)
				progress("%s; sessions %s", s, ch.counts())
			}
		}
	}
}

// waitStable waits, up to the settle time, until two readings of the
// gateway's goroutines and descriptors 2 s apart agree: what the warm-up
// left behind (transactions' timers, closing sockets) is gone.
func (ch *churn) waitStable(ctx context.Context, pid int, admin string) error {
	deadline := time.Now().Add(ch.o.churn.settle)
	prev, err := ch.sample(ctx, pid, admin, "")
	if err != nil {
		return err
	}
	for time.Now().Before(deadline) {
		holdFor(ctx, 2*time.Second, nil)
		cur, err := ch.sample(ctx, pid, admin, "")
		if err != nil {
			return err
		}
		if cur.goroutines == prev.goroutines && cur.fds == prev.fds && cur.udp == prev.udp {
			return nil
		}
		prev = cur
	}
	return ctx.Err()
}

func peakOf(a, b resources) resources {
	a.goroutines = max(a.goroutines, b.goroutines)
	a.fds = max(a.fds, b.fds)
	a.udp = max(a.udp, b.udp)
	a.heapInuse = max(a.heapInuse, b.heapInuse)
	a.heapAlloc = max(a.heapAlloc, b.heapAlloc)
	a.rss = max(a.rss, b.rss)
	return a
}

// counts prints each kind's sessions: started, and failed if any.
func (ch *churn) counts() string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	var parts []string
	for _, k := range ch.kindList() {
		st := ch.kinds[k.name]
		p := fmt.Sprintf("%s %d", k.name, st.started)
		if f := failed(st); f > 0 {
			p += fmt.Sprintf(" (%d failed)", f)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func failed(st *kindStats) int {
	n := 0
	for _, v := range st.failures {
		n += v
	}
	return n
}

// print writes the report.
func (r *churnReport) print(w io.Writer, ch *churn) {
	co := ch.o.churn
	fmt.Fprintf(w, "== churn: %d calls, %d chats, %d video sessions at once, sessions of %s (±20 %%), new sessions for %s × %d rounds (run %s)\n",
		co.calls, co.chats, co.videos, co.session, co.duration, max(1, co.rounds), r.elapsed.Round(time.Second))
	ch.mu.Lock()
	for _, k := range ch.kindList() {
		st := ch.kinds[k.name]
		fmt.Fprintf(w, "%s sessions: started %d, completed %d, failed %d\n", k.name, st.started, st.ok, failed(st))
		printFailures(w, st.failures)
	}
	if len(ch.bad) > 0 {
		worst := 0.0
		for _, b := range ch.bad {
			worst = max(worst, b)
		}
		fmt.Fprintf(w, "call audio by content: frames back without the marker, median call %.2f%%, worst call %.2f%% (%d calls)\n", 100*median(ch.bad), 100*worst, len(ch.bad))
	}
	if ch.videoSent > 0 {
		fmt.Fprintf(w, "video: %d packets sent by customers, %d received by consoles (%.1f%%)\n", ch.videoSent, ch.videoRecvd, 100*float64(ch.videoRecvd)/float64(ch.videoSent))
	}
	ch.mu.Unlock()
	for _, k := range ch.kindList() {
		loaded, ok := r.per[k.name]
		if !ok {
			continue
		}
		n := float64(r.lanes[k.name])
		idle := r.idle[k.name]
		fmt.Fprintf(w, "one %s session costs: heap %.0f KiB, RSS %.0f KiB, %.1f goroutines, %.1f fds (%.1f UDP) (%d up at once)\n", k.name,
			float64(loaded.heapInuse-idle.heapInuse)/n/1024, float64(loaded.rss-idle.rss)/n/1024,
			float64(loaded.goroutines-idle.goroutines)/n, float64(loaded.fds-idle.fds)/n, float64(loaded.udp-idle.udp)/n, int(n))
	}
	fmt.Fprintf(w, "baseline: %s\n", r.base)
	fmt.Fprintf(w, "peak:     %s\n", r.peak)
	if len(r.ends) > 1 {
		for i, e := range r.ends {
			fmt.Fprintf(w, "end of round %d: %s (%.0fs after it; sessions so far: %s)\n", i+1, e.res, e.settled.Seconds(), e.counts)
			fmt.Fprintf(w, "  above the baseline: %s\n", e.res.growth(r.base))
			if i > 0 {
				fmt.Fprintf(w, "  above round 1's end: %s\n", e.res.growth(r.ends[0].res))
			}
		}
	} else {
		fmt.Fprintf(w, "end:      %s (%.0fs after the churn)\n", r.end, r.settled.Seconds())
		fmt.Fprintf(w, "  above the baseline: %s\n", r.end.growth(r.base))
	}
	m := co.margins
	fmt.Fprintf(w, "margins:  goroutines +%d, fds +%d, UDP +%d, heap in use +%s, live objects +%s, RSS +%s\n", m.goroutines, m.fds, m.udp, mib(m.heap), mib(m.live), mib(m.rss))
	if len(r.excess) == 0 {
		fmt.Fprintln(w, "back to baseline: yes")
	} else {
		fmt.Fprintln(w, "back to baseline: NO")
		for _, e := range r.excess {
			fmt.Fprintln(w, "  "+e)
		}
	}
	if r.diffErr != nil {
		fmt.Fprintf(w, "heap profile diff: %v\n", r.diffErr)
	} else {
		fmt.Fprintf(w, "heap profile diff, in use at the end minus the baseline (go tool pprof -top -diff_base):\n%s\n", r.diff)
	}
	if len(r.ends) > 1 {
		if r.roundsDiffErr != nil {
			fmt.Fprintf(w, "heap profile diff between the rounds: %v\n", r.roundsDiffErr)
		} else {
			fmt.Fprintf(w, "heap profile diff, in use at the end of the last round minus the end of the first:\n%s\n", r.roundsDiff)
		}
	}
}

// ok reports whether the run passed: no session failed and every figure
// came back within its margin.
func (r *churnReport) ok() bool { return r.failures == 0 && len(r.excess) == 0 }
