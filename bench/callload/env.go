package main

import (
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/crypto/bcrypt"
)

//go:embed sipp_echo.xml
var sippEcho []byte

// proc is a child process the tool started; its output goes to a log file
// in the run's directory.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// pinned returns argv run on CPU cpu with taskset, or argv itself when cpu
// is negative.
func pinned(cpu int, argv ...string) []string {
	if cpu < 0 {
		return argv
	}
	return append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
}

func startProc(dir, name string, argv ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process with SIGTERM, then SIGKILL after 10 s.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail returns the end of the process's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// freePort returns a port free for both UDP and TCP on 127.0.0.1 (even
// when even is set, as RTP wants).
func freePort(even bool) (int, error) {
	for range 50 {
		u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, err
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		if even && port%2 != 0 || port > 65000 {
			u.Close()
			continue
		}
		t, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		u.Close()
		if err != nil {
			continue
		}
		t.Close()
		return port, nil
	}
	return 0, errors.New("callload: no free port")
}

// sipp is the echo phone.
type sipp struct {
	*proc
	addr string // 127.0.0.1:port, SIP over UDP
	// mediaPort is where it echoes RTP.
	mediaPort int
}

// startSIPp runs SIPp with the echo scenario on 127.0.0.1, pinned to cpu.
func startSIPp(dir string, cpu int) (*sipp, error) {
	scenario := filepath.Join(dir, "sipp_echo.xml")
	if err := os.WriteFile(scenario, sippEcho, 0o644); err != nil {
		return nil, err
	}
	var last error
	for range 5 {
		port, err := freePort(false)
		if err != nil {
			return nil, err
		}
		mport, err := freePort(true)
		if err != nil {
			return nil, err
		}
		p, err := startProc(dir, "sipp", pinned(cpu, "sipp", "-sf", scenario, "-i", "127.0.0.1", "-p", strconv.Itoa(port),
			"-mi", "127.0.0.1", "-mp", strconv.Itoa(mport), "-rtp_echo", "-nostdin", "-trace_err")...)
		if err != nil {
			return nil, err
		}
		// SIPp has no ready signal: wait until its port is taken, and
		// check that it did not exit (a port taken meanwhile).
		s := &sipp{proc: p, addr: fmt.Sprintf("127.0.0.1:%d", port), mediaPort: mport}
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) && !p.exited() {
			c, err := net.ListenPacket("udp4", s.addr)
			if err != nil {
				break
			}
			c.Close()
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		if !p.exited() {
			return s, nil
		}
		last = fmt.Errorf("sipp exited: %s", p.tail())
	}
	return nil, last
}

// segueProc is a gateway the tool started.
type segueProc struct {
	*proc
	url   string // http://127.0.0.1:port
	admin string // http://127.0.0.1:port of the admin listener
}

const (
	benchAgentPassword = "callload-password"
	benchAgentPrefix   = "load"
)

// admission is the gateway's call admission for a run (docs/api.md,
// "Capacity").
type admission struct {
	maxCalls int    // limits.max_calls
	maxLag   string // limits.max_scheduler_lag, empty for the default
	maxCPU   int    // limits.max_cpu_percent, 0 for unset
	maxLate  int    // limits.max_media_late_percent, negative for the default
}

// tuning is what a run changes in the gateway's media settings.
type tuning struct {
	opusComplexity int    // webrtc.opus_complexity, 0 for the default
	udpMux         bool   // webrtc.udp_mux_port: one ICE port for every peer
	logLevel       string // log.level
	// allAddrs gathers host candidates on every local address; otherwise
	// on 127.0.0.1 only (webrtc.ips), the one address the generator's
	// peers reach, as a deployment names its public address.
	allAddrs bool
}

// segueConfig writes the gateway's config for a run: loopback only, a
// trunk to the echo phone, agents for the load, limits raised so that
// one address may place every call, admission as adm says, media
// settings as tune says.
func segueConfig(dir, sippAddr string, agents, calls int, adm admission, tune tuning) (string, string, string, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(benchAgentPassword), bcrypt.MinCost)
	if err != nil {
		return "", "", "", err
	}
	port, err := freePort(false)
	if err != nil {
		return "", "", "", err
	}
	admin, err := freePort(false)
	if err != nil {
		return "", "", "", err
	}
	sipPort, err := freePort(false)
	if err != nil {
		return "", "", "", err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	adminURL := fmt.Sprintf("http://127.0.0.1:%d", admin)
	udpLo := 40000 + 1000*(port%10)
	rtpLo := 52000 + 1000*(port%10)
	webrtcExtra := ""
	if tune.opusComplexity != 0 {
		webrtcExtra += fmt.Sprintf("  opus_complexity: %d\n", tune.opusComplexity)
	}
	if !tune.allAddrs {
		webrtcExtra += "  ips: [\"127.0.0.1\"]\n"
	}
	if tune.udpMux {
		mux, err := freePort(false)
		if err != nil {
			return "", "", "", err
		}
		webrtcExtra += fmt.Sprintf("  udp_mux_port: %d\n", mux)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `http:
  listen: "127.0.0.1:%d"
  public_url: %q
  allowed_origins: [%q]
  admin_listen: "127.0.0.1:%d"
store:
  dsn: "data/segue.db"
  files_dir: "data/files"
webrtc:
  loopback_candidates: true
  allowed_remote_networks: ["127.0.0.0/8"]
  udp_port_range: [%d, %d]
%ssip:
  listen: ["udp:127.0.0.1:%d"]
  rtp_port_range: [%d, %d]
trunks:
  - name: echo
    uri: "sip:%s"
    codecs: [PCMU]
    allow_inbound_from: ["127.0.0.1/32"]
    max_calls: %d
queues:
  - name: support
    trunk: echo
    dial: "sip:600@%s"
    max_waiting: %d
agents:
`, port, url, url, admin, udpLo, udpLo+999, webrtcExtra, sipPort, rtpLo, rtpLo+999, sippAddr, calls+10, sippAddr, calls+10)
	for i := range agents {
		fmt.Fprintf(&b, "  - id: %s%d\n    name: \"Load %d\"\n    password_hash: %q\n    phone: \"sip:1001@%s\"\n    queues: [support]\n    max_chats: %d\n",
			benchAgentPrefix, i+1, i+1, hash, sippAddr, calls+10)
	}
	fmt.Fprintf(&b, `limits:
  max_calls: %d
  max_conversations: %d
  max_chats_per_agent: %d
  new_chats_per_ip_per_minute: 100000
  max_peers_per_ip: %d
  peer_starts_per_ip_per_minute: 100000
  calls_per_ip_per_hour: 0
  calls_per_conversation_per_hour: 0
  max_sockets_per_ip: %d
  max_video_sessions: %d
  messages_per_socket_per_second: 1000
  bytes_per_socket_per_second: 1048576
`, adm.maxCalls, 10*calls+100, calls+10, calls+10, 2*calls+20, calls+10)
	if adm.maxLag != "" {
		fmt.Fprintf(&b, "  max_scheduler_lag: %s\n", adm.maxLag)
	}
	if adm.maxCPU > 0 {
		fmt.Fprintf(&b, "  max_cpu_percent: %d\n", adm.maxCPU)
	}
	if adm.maxLate >= 0 {
		fmt.Fprintf(&b, "  max_media_late_percent: %d\n", adm.maxLate)
	}
	fmt.Fprintf(&b, "log:\n  level: %s\n", cmp.Or(tune.logLevel, "warn"))
	path := filepath.Join(dir, "segue.yaml")
	return path, url, adminURL, os.WriteFile(path, []byte(b.String()), 0o600)
}

// startSegue runs bin serve on the run's config, pinned to cpu, and
// waits until it is ready.
func startSegue(dir, bin, config, url, admin string, cpu int) (*segueProc, error) {
	p, err := startProc(dir, "segue", pinned(cpu, bin, "serve", "--config", config)...)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			return nil, fmt.Errorf("segue exited: %s", p.tail())
		}
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return &segueProc{proc: p, url: url, admin: admin}, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.stop()
	return nil, fmt.Errorf("segue not ready after 30s: %s", p.tail())
}

// buildSegue builds the gateway into out with the given build tags.
func buildSegue(ctx context.Context, out, tags string) error {
	args := []string{"build", "-trimpath", "-o", out}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/segue")...)
	cmd.Dir = moduleRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", out, err, b)
	}
	return nil
}

// moduleRoot returns the directory of the module's go.mod (the current
// directory if go cannot tell), where go build and go test run.
func moduleRoot() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if gomod := strings.TrimSpace(string(out)); err == nil && gomod != "" && gomod != os.DevNull {
		return filepath.Dir(gomod)
	}
	return "."
}

var pinOnce sync.Once

// pinSelf moves every thread of this process to CPU cpu and runs Go on
// one P, so that the generator shares that core with nothing of the
// target's. Threads created later inherit the affinity of their creator.
func pinSelf(cpu int) error {
	var err error
	pinOnce.Do(func() {
		runtime.GOMAXPROCS(1)
		var mask [16]uint64
		mask[cpu/64] |= 1 << (cpu % 64)
		tasks, e := os.ReadDir("/proc/self/task")
		if e != nil {
			err = e
			return
		}
		for _, t := range tasks {
			tid, _ := strconv.Atoi(t.Name())
			_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask)))
			if errno != 0 {
				err = fmt.Errorf("callload: sched_setaffinity: %w", errno)
				return
			}
		}
	})
	return err
}

// rtpengine starts rtpengine and runs the scenario through it.
func (e *runEnv) rtpengine(ctx context.Context) (*report, error) {
	p, ng, err := startRtpengine(ctx, e.dir, e.targetCPU)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	defer ng.close()
	o := e.o
	o.pcmu = false
	t := &rtpengineTarget{ng: ng, echoPort: e.phone.mediaPort}
	r, err := runScenario(ctx, o.scenario("rtpengine", t, p.pid(), ""))
	if err != nil {
		return nil, fmt.Errorf("rtpengine: %w\n%s", err, p.tail())
	}
	return r, nil
}
