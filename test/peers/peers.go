// Package peers starts real SIP peers (SIPp and baresip) for end-to-end
// tests, each in its own temporary directory on free loopback ports.
// Processes are killed at test cleanup and their logs are printed when
// the test failed. A missing binary fails the test: these helpers are
// only used under the e2e build tag, where the peers are required.
package peers

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// FreeUDPPort returns a UDP port on ip that was free a moment ago.
func FreeUDPPort(t testing.TB, ip string) int {
	t.Helper()
	c, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// FreeTCPPort returns a TCP port on ip that is free at the time of the
// call (for a server the test starts next).
func FreeTCPPort(t testing.TB, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeEvenUDPPort returns a free even UDP port whose successor is free
// too, for an RTP/RTCP pair.
func FreeEvenUDPPort(t testing.TB, ip string) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		p := FreeUDPPort(t, ip)
		if p%2 == 1 {
			p--
		}
		a, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			continue
		}
		b, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(p+1)))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return p
	}
	t.Fatal("no free even port pair")
	return 0
}

// Process is a running peer.
type Process struct {
	Name string
	Dir  string
	cmd  *exec.Cmd
	out  SyncBuffer
	done chan struct{}
	err  error
	mu   sync.Mutex // guards err
}

func start(t testing.TB, name, dir string, args ...string) *Process {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is required for e2e tests: %v", name, err)
	}
	p := &Process{Name: name, Dir: dir, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		err := p.cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("---- %s output (%s) ----\n%s", name, dir, p.Output())
			for _, f := range []string{"*_errors.log", "*_messages.log"} {
				matches, _ := filepath.Glob(filepath.Join(dir, f))
				for _, m := range matches {
					b, _ := os.ReadFile(m)
					t.Logf("---- %s ----\n%s", filepath.Base(m), tail(b, 8000))
				}
			}
		}
	})
	return p
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// SyncBuffer keeps what a process prints on stdout and stderr: writes and
// reads may come from different goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Output returns what the process printed so far.
func (p *Process) Output() string { return p.out.String() }

// Wait waits for the process to exit and returns its exit error.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("%s still running: %w", p.Name, ctx.Err())
	}
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// SIPp is a running SIPp scenario.
type SIPp struct {
	*Process
	IP   string
	Port int
}

// Addr is SIPp's SIP address, host:port.
func (s *SIPp) Addr() string { return net.JoinHostPort(s.IP, strconv.Itoa(s.Port)) }

// StartSIPp runs SIPp with scenario (a path) on ip and a free port.
// extra is appended to the command line (e.g. a remote address for a
// UAC, "-m", "1"). The SIPp exit status is 0 when every call passed.
func StartSIPp(t testing.TB, scenario, ip string, extra ...string) *SIPp {
	t.Helper()
	abs, err := filepath.Abs(scenario)
	if err != nil {
		t.Fatal(err)
	}
	// A free port can be taken by another process between our probe and
	// SIPp's bind (the machine runs other tests): SIPp then exits at once,
	// and we try again on other ports.
	var s *SIPp
	for attempt := 0; attempt < 5; attempt++ {
		dir := t.TempDir()
		port := FreeUDPPort(t, ip)
		mport := FreeEvenUDPPort(t, ip)
		args := []string{"-sf", abs, "-i", ip, "-p", strconv.Itoa(port), "-mi", ip, "-mp", strconv.Itoa(mport),
			"-nostdin", "-trace_err", "-trace_msg", "-timeout", "60s", "-timeout_error"}
		args = append(args, extra...)
		s = &SIPp{Process: start(t, "sipp", dir, args...), IP: ip, Port: port}
		// SIPp has no ready signal; wait until its port is taken.
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) && !s.Exited() {
			c, err := net.ListenPacket("udp", s.Addr())
			if err != nil {
				break // bound by SIPp
			}
			c.Close()
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // a failed bind exits right away
		if !s.Exited() {
			return s
		}
		t.Logf("sipp exited at start (port %d taken?), trying other ports", port)
	}
	return s
}

// Baresip is a running baresip desk phone.
type Baresip struct {
	*Process
	IP   string
	Port int
	User string
	// TLSPort is the SIP over TLS port (Port+1, as baresip binds it) when
	// started WithTLSSRTP, else 0.
	TLSPort int
	// RTPPorts is the range baresip takes its RTP ports from (an even
	// port each call, RTCP on the next one), both ends included.
	RTPPorts [2]int
	rec      string
}

// TLSURI is the phone's SIP URI over TLS (transport=tls), for a phone
// started WithTLSSRTP.
func (b *Baresip) TLSURI() string {
	return "sip:" + b.User + "@" + net.JoinHostPort(b.IP, strconv.Itoa(b.TLSPort)) + ";transport=tls"
}

// BaresipOption changes how StartBaresip sets the phone up.
type BaresipOption func(*baresipOptions)

type baresipOptions struct {
	certKey, caFile string // TLS: certificate and key in one PEM file; CAs to trust
	srtp            bool
}

// WithTLSSRTP makes the phone listen for SIP over TLS too, on Port+1,
// with the certificate and private key in certKeyPEM (one PEM file) and
// caFile's certificates trusted, and insist on SDES-SRTP (RTP/SAVP) in
// every call (baresip's srtp module, mediaenc=srtp-mand).
func WithTLSSRTP(certKeyPEM, caFile string) BaresipOption {
	return func(o *baresipOptions) {
		o.certKey, o.caFile, o.srtp = certKeyPEM, caFile, true
	}
}

// URI is the phone's SIP URI.
func (b *Baresip) URI() string {
	return "sip:" + b.User + "@" + net.JoinHostPort(b.IP, strconv.Itoa(b.Port))
}

// Recordings returns the WAV files sndfile wrote: what the phone heard
// (decoded, "-dec.wav") and what it sent ("-enc.wav").
func (b *Baresip) Recordings() (heard, sent []string) {
	heard, _ = filepath.Glob(filepath.Join(b.rec, "*-dec.wav"))
	sent, _ = filepath.Glob(filepath.Join(b.rec, "*-enc.wav"))
	return heard, sent
}

// StartBaresip runs baresip as an auto-answering phone for user on ip,
// playing source (an 8 kHz mono WAV) into every call and recording both
// directions.
func StartBaresip(t testing.TB, ip, user, source string, opts ...BaresipOption) *Baresip {
	t.Helper()
	var o baresipOptions
	for _, f := range opts {
		f(&o)
	}
	abs, err := filepath.Abs(source)
	if err != nil {
		t.Fatal(err)
	}
	// baresip binds its SIP port on UDP and TCP, and the machine runs
	// other tests: a port probed free can be taken before baresip binds
	// it. baresip then exits at once, and we try again on other ports.
	var b *Baresip
	for attempt := 0; attempt < 5; attempt++ {
		b = startBaresipOnce(t, ip, user, abs, o)
		if b != nil {
			return b
		}
	}
	t.Fatal("baresip could not bind a SIP port in 5 attempts")
	return nil
}

// startBaresipOnce starts baresip on fresh ports; nil when it exited at
// start because a port was taken meanwhile.
func startBaresipOnce(t testing.TB, ip, user, source string, o baresipOptions) *Baresip {
	t.Helper()
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	if err := os.Mkdir(rec, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freeUDPAndTCPPort(t, ip)
	tlsPort := 0
	if o.certKey != "" {
		// baresip binds TLS on the SIP port + 1.
		for i := 0; i < 100 && !tcpFree(ip, port+1); i++ {
			port = freeUDPAndTCPPort(t, ip)
		}
		tlsPort = port + 1
	}
	rtp := FreeEvenUDPPort(t, ip)
	// net_interface puts ip in SDP too: without it baresip advertises the
	// machine's default address (say eth0's) while its RTP comes from ip,
	// which a gateway that takes media only from the SDP address drops.
	cfg := fmt.Sprintf(`sip_listen		%s:%d
net_interface		%s
audio_source		aufile,%s
audio_player		aufile,/dev/null
audio_alert		aufile,/dev/null
rtp_ports		%d-%d
module_path		/usr/lib/baresip/modules
module			aufile.so
module			g711.so
module			sndfile.so
snd_path		%s
module_app		account.so
module_app		menu.so
answermode		auto
`, ip, port, ip, source, rtp, rtp+9, rec)
	acct := fmt.Sprintf("<sip:%s@%s:%d>;regint=0;answermode=auto\n", user, ip, port)
	if o.certKey != "" {
		cfg += fmt.Sprintf("sip_certificate\t%s\nsip_cafile\t\t%s\nmodule\t\t\tsrtp.so\n", o.certKey, o.caFile)
		acct = fmt.Sprintf("<sip:%s@%s:%d;transport=tls>;regint=0;answermode=auto;mediaenc=srtp-mand\n", user, ip, tlsPort)
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(acct), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &Baresip{Process: start(t, "baresip", dir, "-f", dir), IP: ip, Port: port, User: user, TLSPort: tlsPort, RTPPorts: [2]int{rtp, rtp + 9}, rec: rec}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && !b.Exited() {
		c, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			time.Sleep(50 * time.Millisecond) // a failed TCP bind exits right after
			if !b.Exited() {
				return b
			}
			break
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	if !b.Exited() {
		t.Fatalf("baresip did not bind %s:%d within 10 s: %s", ip, port, b.Output())
	}
	if strings.Contains(b.Output(), "Address already in use") {
		t.Logf("baresip exited at start (port %d taken?), trying other ports", port)
		return nil
	}
	t.Fatalf("baresip exited: %s", b.Output())
	return nil
}

// tcpFree reports whether a TCP port on ip can be bound now.
func tcpFree(ip string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// freeUDPAndTCPPort returns a port on ip that was free a moment ago for
// both UDP and TCP (a SIP phone listens on both).
func freeUDPAndTCPPort(t testing.TB, ip string) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		p := FreeUDPPort(t, ip)
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("no port free for both UDP and TCP")
	return 0
}

// NATS is a nats-server with JetStream on, in a temp dir, on a free
// loopback port.
type NATS struct {
	*Process
	URL string
}

// StartNATS starts nats-server, with extra arguments (such as "--auth",
// token), and waits until it accepts connections.
func StartNATS(t testing.TB, extra ...string) *NATS {
	t.Helper()
	dir := t.TempDir()
	port := FreeTCPPort(t, "127.0.0.1")
	args := append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", filepath.Join(dir, "js")}, extra...)
	p := start(t, "nats-server", dir, args...)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return &NATS{Process: p, URL: "nats://" + addr}
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("nats-server did not start:\n%s", p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kamailio is a kamailio proxy in front of gateways, on a free loopback
// UDP port.
type Kamailio struct {
	*Process
	Addr string // host:port
}

// StartKamailio runs kamailio with the config file cfg and a dispatcher
// list of gateways (SIP URIs, set 1), passed to it as DISPATCHER_LIST,
// and waits until its port is taken. It is stopped with SIGTERM, which
// ends its child processes too.
func StartKamailio(t testing.TB, cfg string, gateways []string) *Kamailio {
	t.Helper()
	abs, err := filepath.Abs(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var list strings.Builder
	for _, g := range gateways {
		fmt.Fprintf(&list, "1 %s\n", g)
	}
	dsList := filepath.Join(dir, "dispatcher.list")
	if err := os.WriteFile(dsList, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	port := FreeUDPPort(t, "127.0.0.1")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p := start(t, "kamailio", dir, "-f", abs, "-DD", "-E", "-n", "1", "-l", "udp:"+addr,
		"-A", fmt.Sprintf("DISPATCHER_LIST=%q", dsList), "-Y", dir, "-P", filepath.Join(dir, "kamailio.pid"), "-w", dir)
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return &Kamailio{Process: p, Addr: addr} // bound by kamailio
		}
		c.Close()
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("kamailio did not start:\n%s", p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
