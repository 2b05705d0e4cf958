// Command callload measures how many concurrent escalated calls a Segue
// gateway carries, and how well. Each simulated customer is a pion peer
// that opens a chat through the documented API, has it accepted by an
// agent, escalates to voice and sends pre-encoded Opus (speech-like audio
// over a marker tone) for the hold time; the far end is SIPp answering at
// once and echoing the audio (-rtp_echo). What comes back is decoded and
// judged frame by frame: a 20 ms frame is good when it carries the marker.
//
// It reports calls attempted, established and failed (with reasons),
// set-up times, frames without the marker and the longest gap, packet loss
// each way, the target's CPU and memory per call, goroutines, the
// generator's own CPU, and the gateway's own call records beside them.
//
// Modes:
//
//	callload -gateway http://127.0.0.1:8080 -admin http://127.0.0.1:9090 -pid 1234 -agent alice -password ...
//	    attach to a running gateway (its trunk must lead to an answering echo phone)
//	callload -start
//	    build bin/segue, start SIPp and the gateway pinned to CPU 1 (the
//	    generator and SIPp on CPU 0), then measure
//	callload -compare
//	    side by side: Segue with gopus, with libopus, with G.711 from the
//	    browser (no transcoding), rtpengine doing the same Opus ↔ PCMU work,
//	    and the codec floor from BenchmarkStages
//	callload -churn -churn-for 30m
//	    the soak: start SIPp and the gateway, then open and close chats,
//	    calls and video sessions at a steady rate; afterwards the gateway's
//	    goroutines, descriptors, UDP sockets, heap and RSS must be back to
//	    their baseline within the -margin-* flags and no session may have
//	    failed (exit status 1 otherwise), with the heap profile's diff
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// options are the command line.
type options struct {
	calls        int
	ramp         float64
	hold         time.Duration
	setupTimeout time.Duration
	gateway      string
	admin        string
	pid          int
	agents       string
	password     string
	pcmu         bool
	wideOnly     bool
	start        bool
	compare      bool
	segueBin     string
	build        bool
	pin          bool
	agentCount   int
	floorTime    string
	keep         bool
	settle       time.Duration
	// Admission (-start/-compare): the gateway's limits.max_calls (0: the
	// calls plus 10), limits.max_scheduler_lag ("": the gateway's
	// default), limits.max_cpu_percent (0: unset),
	// limits.max_media_late_percent (negative: the gateway's default), and
	// how many busy loops share the gateway's core.
	maxCalls int
	maxLag   string
	maxCPU   int
	maxLate  int
	burn     int
	// tune is the gateway's media settings (-start/-compare/-churn).
	tune tuning
	// profileDir, when set, receives the target's CPU profile over the
	// steady window and its heap profile at the end of it.
	profileDir string
	progress   io.Writer
	churnMode  bool
	churn      churnOptions
}

func main() {
	var o options
	flag.IntVar(&o.calls, "calls", 20, "concurrent calls (1-2000)")
	flag.Float64Var(&o.ramp, "ramp", 10, "call starts per second")
	flag.DurationVar(&o.hold, "hold", 20*time.Second, "how long the calls are held together once all are up (the measuring window)")
	flag.DurationVar(&o.setupTimeout, "setup-timeout", 30*time.Second, "longest set-up of one call (chat, accept, voice.start → connected)")
	flag.StringVar(&o.gateway, "gateway", "http://127.0.0.1:8080", "attach: the gateway's public URL (loopback only)")
	flag.StringVar(&o.admin, "admin", "", "attach: the gateway's admin listener URL (http.admin_listen), for go_goroutines")
	flag.IntVar(&o.pid, "pid", 0, "attach: the gateway's process id, for CPU and memory")
	flag.StringVar(&o.agents, "agent", "", "attach: agent ids (comma-separated) that accept the conversations")
	flag.StringVar(&o.password, "password", "", "attach: the agents' password")
	flag.BoolVar(&o.pcmu, "pcmu", false, "customers offer PCMU only (G.711 passthrough, no transcoding)")
	flag.BoolVar(&o.wideOnly, "ignore-maxplaybackrate", false, "customers send full-band Opus even when the answer caps playback at 8 kHz (by default they send narrowband then, as Chrome does)")
	flag.BoolVar(&o.start, "start", false, "start SIPp and the gateway (bin/segue) in a temp dir instead of attaching")
	flag.BoolVar(&o.compare, "compare", false, "run Segue (gopus, libopus, G.711 passthrough) and rtpengine side by side, with the codec floor")
	flag.StringVar(&o.segueBin, "segue-bin", "bin/segue", "-start: the gateway binary (built from ./cmd/segue when missing or with -build)")
	flag.BoolVar(&o.build, "build", false, "-start/-compare: build the gateway binaries even if present")
	flag.BoolVar(&o.pin, "pin", true, "-start/-compare: pin the target to CPU 1, the generator and SIPp to CPU 0 (needs 2 CPUs)")
	flag.IntVar(&o.agentCount, "agents", 1, "-start/-compare: agents accepting the conversations")
	flag.StringVar(&o.floorTime, "floor-benchtime", "500ms", "-compare: benchtime of the codec floor benchmark")
	flag.BoolVar(&o.keep, "keep", false, "keep the run's temp dir (configs and logs)")
	flag.BoolVar(&o.churnMode, "churn", false, "soak: start SIPp and the gateway, churn chats, calls and video sessions, then check that the gateway's resources came back")
	flag.IntVar(&o.churn.calls, "churn-calls", 10, "-churn: calls up at once (half the 20 of BENCHMARKS.md's call table)")
	flag.IntVar(&o.churn.chats, "churn-chats", 20, "-churn: chat-only conversations open at once")
	flag.IntVar(&o.churn.videos, "churn-videos", 8, "-churn: video sessions up at once (half the 16 streams of BENCHMARKS.md's video table)")
	flag.DurationVar(&o.churn.duration, "churn-for", 30*time.Minute, "-churn: how long new sessions start")
	flag.IntVar(&o.churn.rounds, "churn-rounds", 1, "-churn: churns of -churn-for back to back on the same gateway, each followed by the check against the one baseline (a cache that fills up grows in the first round only, a leak in every round)")
	flag.DurationVar(&o.churn.session, "session", 30*time.Second, "-churn: how long one session is held (±20 %)")
	flag.DurationVar(&o.churn.settle, "churn-settle", time.Minute, "-churn: longest wait after the churn for the figures to come back")
	flag.BoolVar(&o.churn.perKind, "per-kind", true, "-churn: first measure one round of each kind alone (heap, RSS, goroutines per session)")
	flag.IntVar(&o.churn.videoKbps, "video-kbps", 500, "-churn: bitrate of each customer's camera")
	flag.IntVar(&o.churn.margins.goroutines, "margin-goroutines", 10, "-churn: goroutines the gateway may end with above its baseline")
	flag.IntVar(&o.churn.margins.fds, "margin-fds", 4, "-churn: file descriptors above the baseline")
	flag.IntVar(&o.churn.margins.udp, "margin-udp", 0, "-churn: UDP sockets (SIP, RTP, ICE ports) above the baseline")
	var heapMB, liveMB, rssMB float64
	flag.Float64Var(&heapMB, "margin-heap-mb", 8, "-churn: heap in use (after a GC) above the baseline, MiB")
	flag.Float64Var(&liveMB, "margin-live-mb", 4, "-churn: live objects (after a GC) above the baseline, MiB (the store's cache of last seqs alone may hold 3.3 MiB once 50,000 conversations have had messages)")
	flag.Float64Var(&rssMB, "margin-rss-mb", 48, "-churn: RSS above the baseline, MiB")
	flag.DurationVar(&o.settle, "settle", 200*time.Millisecond, "the quality window of a call starts this long after its first returned audio")
	flag.IntVar(&o.maxCalls, "max-calls", 0, "-start/-compare: the gateway's limits.max_calls (0: -calls plus 10); below -calls, the calls past it must be refused busy")
	flag.StringVar(&o.maxLag, "max-scheduler-lag", "", "-start/-compare: the gateway's limits.max_scheduler_lag (empty: its default, 20ms, or 250ms under -churn; 0s: off)")
	flag.IntVar(&o.maxCPU, "max-cpu-percent", 0, "-start/-compare: the gateway's limits.max_cpu_percent (0: unset)")
	flag.IntVar(&o.maxLate, "max-media-late-percent", -1, "-start/-compare: the gateway's limits.max_media_late_percent (negative: its default, 10, or off under -churn; 0: off)")
	flag.StringVar(&o.profileDir, "profile", "", "write the gateway's CPU profile of the steady window (cpu.pprof) its heap profile (heap.pprof) and its goroutines (goroutines.txt) at the end of it to this directory, from the admin listener's /debug/pprof")
	flag.IntVar(&o.tune.opusComplexity, "opus-complexity", 0, "-start/-compare/-churn: the gateway's webrtc.opus_complexity (1-10; 0: its default, auto: complexity 1 until the customer reports loss)")
	flag.BoolVar(&o.tune.allAddrs, "all-addresses", false, "-start/-compare/-churn: the gateway gathers ICE host candidates on every local address, not on 127.0.0.1 alone (webrtc.ips), as before this flag existed")
	flag.BoolVar(&o.tune.udpMux, "udp-mux", false, "-start/-compare/-churn: the gateway's peers share one ICE port (webrtc.udp_mux_port) instead of taking ports of their own")
	flag.StringVar(&o.tune.logLevel, "gateway-log", "warn", "-start/-compare/-churn: the gateway's log.level (debug, info, warn, error), in segue.log of the run's temp dir (-keep keeps it)")
	flag.IntVar(&o.burn, "burn", 0, "-start/-compare: busy loops run on the gateway's core during each run, to overload it")
	flag.Parse()
	// The soak's gateway admits calls up to 250 ms of scheduler lag unless
	// told otherwise, as the e2e gateways do.
	o.churn.maxLag = 250 * time.Millisecond
	if d, err := time.ParseDuration(o.maxLag); err == nil {
		o.churn.maxLag = d
	}
	o.churn.maxLate = max(o.maxLate, 0)
	o.churn.margins.heap, o.churn.margins.live, o.churn.margins.rss = int64(heapMB*(1<<20)), int64(liveMB*(1<<20)), int64(rssMB*(1<<20))
	o.progress = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.churnMode {
		r, err := runChurn(ctx, o, os.Stdout)
		if err == nil && !r.ok() {
			err = fmt.Errorf("%d sessions failed; %d figures not back to baseline", r.failures, len(r.excess))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "callload:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "callload:", err)
		os.Exit(1)
	}
}

func (o options) check() error {
	var errs []error
	if o.calls < 1 || o.calls > 2000 {
		errs = append(errs, errors.New("-calls: 1-2000"))
	}
	if o.ramp <= 0 {
		errs = append(errs, errors.New("-ramp: must be > 0"))
	}
	if o.hold < time.Second {
		errs = append(errs, errors.New("-hold: at least 1s"))
	}
	if o.settle < 0 {
		errs = append(errs, errors.New("-settle: must not be negative"))
	}
	if o.maxCalls < 0 || o.maxCPU < 0 || o.burn < 0 {
		errs = append(errs, errors.New("-max-calls, -max-cpu-percent, -burn: must not be negative"))
	}
	if o.maxLate > 100 {
		errs = append(errs, errors.New("-max-media-late-percent: at most 100"))
	}
	if o.maxLag != "" {
		if d, err := time.ParseDuration(o.maxLag); err != nil || d < 0 {
			errs = append(errs, errors.New("-max-scheduler-lag: a duration ≥ 0, e.g. 20ms"))
		}
	}
	if o.tune.opusComplexity < 0 || o.tune.opusComplexity > 10 {
		errs = append(errs, errors.New("-opus-complexity: 1-10, or 0 for the gateway's default"))
	}
	if o.agentCount < 1 {
		errs = append(errs, errors.New("-agents: at least 1"))
	}
	if !o.start && !o.compare {
		u, err := url.Parse(o.gateway)
		if err != nil || !isLoopback(u.Hostname()) {
			errs = append(errs, errors.New("-gateway: must be a loopback URL"))
		}
		if o.agents == "" || o.password == "" {
			errs = append(errs, errors.New("-agent and -password: needed to accept the conversations"))
		}
	}
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	return host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1"
}

// run runs the mode o asks for and prints the reports to w; it returns
// them too.
func run(ctx context.Context, o options, w io.Writer) error {
	_, err := runReports(ctx, o, w)
	return err
}

func runReports(ctx context.Context, o options, w io.Writer) ([]*report, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if !o.start && !o.compare {
		r, err := runScenario(ctx, o.scenario("segue", &gatewayTarget{api: newChatAPI(o.gateway), agents: strings.Split(o.agents, ","), password: o.password}, o.pid, metricsURL(o.admin)))
		if err != nil {
			return nil, err
		}
		r.print(w)
		return []*report{r}, nil
	}
	env, err := newRunEnv(o, "callload-")
	if err != nil {
		return nil, err
	}
	defer env.close()
	if !o.compare {
		if err := env.ensureBin(ctx, o.segueBin, "", o.build); err != nil {
			return nil, err
		}
		label := "segue"
		if o.pcmu {
			label = "segue, G.711 from the browser"
		}
		r, err := env.segue(ctx, label, o.segueBin, o.pcmu)
		if err != nil {
			return nil, err
		}
		r.print(w)
		fmt.Fprintln(w)
		printTable(w, []*report{r}, 0, nil)
		return []*report{r}, nil
	}
	return env.compare(ctx, w)
}

func metricsURL(admin string) string {
	if admin == "" {
		return ""
	}
	return strings.TrimRight(admin, "/") + "/metrics"
}

// limits returns the admission limits of the gateway's config.
func (o options) limits() admission {
	a := admission{maxCalls: o.maxCalls, maxLag: o.maxLag, maxCPU: o.maxCPU, maxLate: o.maxLate}
	if a.maxCalls == 0 {
		a.maxCalls = o.calls + 10
	}
	return a
}

func (o options) scenario(label string, t target, pid int, metrics string) scenario {
	return scenario{label: label, calls: o.calls, ramp: o.ramp, hold: o.hold, pcmu: o.pcmu, wideOnly: o.wideOnly, ownSockets: o.tune.udpMux, setupTimeout: o.setupTimeout,
		target: t, pid: pid, metricsURL: metrics, progress: o.progress, settle: o.settle, profileDir: o.profileDir}
}

// runEnv is what -start and -compare share: the run's directory and the
// echo phone.
type runEnv struct {
	o         options
	dir       string
	phone     *sipp
	targetCPU int
	runs      int
}

// newRunEnv pins the tool (with -pin), makes the run's directory and
// starts the echo phone; close undoes it.
func newRunEnv(o options, prefix string) (*runEnv, error) {
	genCPU, targetCPU := -1, -1
	if o.pin {
		if runtime.NumCPU() < 2 {
			return nil, errors.New("-pin needs 2 CPUs (use -pin=false)")
		}
		genCPU, targetCPU = 0, 1
		if err := pinSelf(genCPU); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	if o.keep {
		fmt.Fprintln(o.progress, "run directory:", dir)
	}
	phone, err := startSIPp(dir, genCPU)
	if err != nil {
		if !o.keep {
			os.RemoveAll(dir)
		}
		return nil, err
	}
	return &runEnv{o: o, dir: dir, phone: phone, targetCPU: targetCPU}, nil
}

// close stops the echo phone and removes the run's directory (unless
// -keep).
func (e *runEnv) close() {
	e.phone.stop()
	if !e.o.keep {
		os.RemoveAll(e.dir)
	}
}

// ensureBin builds bin with tags unless it exists (and build is unset).
func (e *runEnv) ensureBin(ctx context.Context, bin, tags string, build bool) error {
	if _, err := os.Stat(bin); err == nil && !build {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	fmt.Fprintf(e.o.progress, "building %s %s\n", bin, tags)
	return buildSegue(ctx, bin, tags)
}

// segue starts a fresh gateway from bin and runs the scenario on it.
func (e *runEnv) segue(ctx context.Context, label, bin string, pcmu bool) (*report, error) {
	e.runs++
	dir := filepath.Join(e.dir, fmt.Sprintf("segue-%d", e.runs))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	config, url, admin, err := segueConfig(dir, e.phone.addr, e.o.agentCount, e.o.calls, e.o.limits(), e.o.tune)
	if err != nil {
		return nil, err
	}
	gw, err := startSegue(dir, abs, config, url, admin, e.targetCPU)
	if err != nil {
		return nil, err
	}
	defer gw.stop()
	for i := range e.o.burn {
		b, err := startProc(dir, fmt.Sprintf("burn-%d", i), pinned(e.targetCPU, "sh", "-c", "while :; do :; done")...)
		if err != nil {
			return nil, err
		}
		defer b.stop()
	}
	agents := make([]string, e.o.agentCount)
	for i := range agents {
		agents[i] = fmt.Sprintf("%s%d", benchAgentPrefix, i+1)
	}
	o := e.o
	o.pcmu = pcmu
	r, err := runScenario(ctx, o.scenario(label, &gatewayTarget{api: newChatAPI(url), agents: agents, password: benchAgentPassword}, gw.pid(), metricsURL(admin)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", label, err, gw.tail())
	}
	if gw.exited() {
		return r, fmt.Errorf("%s: the gateway exited during the run: %s", label, gw.tail())
	}
	return r, nil
}
