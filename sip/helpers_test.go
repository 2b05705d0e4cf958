package sip

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/zaf/g711"
	"go.uber.org/goleak"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// sipgo keeps finished non-INVITE client transactions until Timer K/J.
		goleak.IgnoreTopFunction("time.Sleep"),
		goleak.IgnoreAnyFunction("github.com/emiago/sipgo/sip.(*ClientTx).spinFsmWithResponse"),
		// A fake peer's server transaction that resends a final response
		// after the peer's listening socket closed makes sipgo open a
		// socket of its own for it (createConnection), which the peer's
		// ua.Close may miss when the two race. Closing the layers first
		// instead races inside sipgo. The gateway's own sockets are
		// counted by the soak (bench/callload -churn: UDP sockets back to
		// the baseline).
		goleak.IgnoreAnyFunction("github.com/emiago/sipgo/sip.(*TransportUDP).readUDPConnection"),
	)
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("SIP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// rtpRange picks a random even block so that parallel packages rarely collide.
func rtpRange() [2]int {
	lo := 30000 + 2*rand.IntN(10000)
	return [2]int{lo, lo + 99}
}

// startServer runs a Server on 127.0.0.1:0 (UDP) and stops it at cleanup.
func startServer(t testing.TB, trunks []TrunkConfig, opts ...Option) *Server {
	t.Helper()
	s, _ := startServerCfg(t, Config{Listen: []string{"udp:127.0.0.1:0"}}, trunks, opts...)
	return s
}

// startServerCfg runs a Server with cfg and returns it with a function
// that stops it and waits for Run to return.
func startServerCfg(t testing.TB, cfg Config, trunks []TrunkConfig, opts ...Option) (*Server, func()) {
	t.Helper()
	cfg.RTPPortRange = rtpRange()
	cfg.ApplyDefaults()
	for i := range trunks {
		trunks[i].ApplyDefaults()
	}
	opts = append([]Option{WithLogger(testLogger(t)), WithPortRest(time.Second)}, opts...)
	s, err := New(cfg, trunks, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("run: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

// recorder keeps what a call's audio output receives.
type recorder = audiotest.Recorder

func newRecorder() *recorder { return audiotest.NewRecorder(8000) }

// peakFreq is the strongest frequency of 8 kHz audio.
func peakFreq(s []int16) float64 { return audiotest.PeakFrequency(s, 8000) }

// purity is how much of the signal is at freq, in dB (0 for a pure tone).
func purity(s []int16, freq float64) float64 {
	return audiotest.GoertzelLevel(s, 8000, freq) - audiotest.Level(s)
}

// tone returns n samples of a sine at freq Hz and amplitude amp, 8 kHz,
// continuing from *phase.
func tone(freq, amp float64, n int, phase *float64) transcode.PCM16 {
	out := make(transcode.PCM16, n)
	for i := range out {
		out[i] = int16(amp * 32767 * math.Sin(*phase))
		*phase += 2 * math.Pi * freq / 8000
	}
	return out
}

// playTone writes a tone into w in 20 ms frames, paced like a live source,
// until ctx ends.
func playTone(ctx context.Context, w transcode.PCMWriter, freq float64) {
	var ph float64
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if err := w.WriteSample(tone(freq, 0.5, 160, &ph)); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// waitFor polls cond until it holds or the test deadline nears.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitEvent(t *testing.T, c *Call, kind EventKind) Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-c.Events():
			if e.Kind == kind {
				return e
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %s event", kind)
		}
	}
}

// fakePeer is a bare sipgo UA on 127.0.0.1:0 playing a PBX or phone,
// with handlers set per test.
type fakePeer struct {
	t        testing.TB
	ua       *sipgo.UserAgent
	srv      *sipgo.Server
	cli      *sipgo.Client
	addr     netip.AddrPort
	rtp      *net.UDPConn
	pc       net.PacketConn
	served   bool
	handlers sync.WaitGroup
	done     chan struct{}
}

func newFakePeer(t testing.TB, handlers map[sipmsg.RequestMethod]sipgo.RequestHandler) *fakePeer {
	t.Helper()
	p := newIdlePeer(t)
	p.serve(handlers)
	return p
}

// newIdlePeer binds the peer's sockets; serve starts answering.
func newIdlePeer(t testing.TB) *fakePeer {
	t.Helper()
	return newIdlePeerOn(t, "127.0.0.1")
}

func newIdlePeerOn(t testing.TB, ip string) *fakePeer {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("fake-pbx"),
		sipgo.WithUserAgentTransportLayerOptions(sipmsg.WithTransportLayerLogger(testLogger(t).With("peer", ip))),
		sipgo.WithUserAgentTransactionLayerOptions(sipmsg.WithTransactionLayerLogger(testLogger(t).With("peer", ip))))
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := sipgo.NewServer(ua, sipgo.WithServerLogger(testLogger(t)))
	pc, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	rtpc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	p := &fakePeer{t: t, ua: ua, srv: srv, addr: netip.MustParseAddrPort(pc.LocalAddr().String()), rtp: rtpc, done: make(chan struct{}), pc: pc}
	p.cli, _ = sipgo.NewClient(ua, sipgo.WithClientAddr(p.addr.String()), sipgo.WithClientLogger(testLogger(t)))
	p.cli.TxRequester = &fromListener{ua: ua, laddr: sipmsg.Addr{IP: p.addr.Addr().AsSlice(), Port: int(p.addr.Port())}}
	t.Cleanup(func() {
		pc.Close()
		rtpc.Close()
		// Let handlers still answering finish before the layers close, or
		// sipgo opens a fresh socket for their responses.
		waited := make(chan struct{})
		go func() { p.handlers.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(10 * time.Second): // generous: the machine may be loaded
		}
		ua.Close()
		if p.served {
			<-p.done
		}
	})
	return p
}

func (p *fakePeer) serve(handlers map[sipmsg.RequestMethod]sipgo.RequestHandler) {
	for m, h := range handlers {
		p.srv.OnRequest(m, func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			p.handlers.Add(1)
			defer p.handlers.Done()
			h(req, tx)
		})
	}
	if _, ok := handlers[sipmsg.ACK]; !ok {
		p.srv.OnAck(func(*sipmsg.Request, sipmsg.ServerTransaction) {})
	}
	p.served = true
	go func() { defer close(p.done); _ = p.srv.ServeUDP(p.pc) }()
	waitServing(p.ua, []string{"udp:" + p.addr.String()})
}

func (p *fakePeer) uri(user string) string {
	return fmt.Sprintf("sip:%s@%s", user, p.addr)
}

func (p *fakePeer) trunk(name string) TrunkConfig {
	return TrunkConfig{Name: name, URI: "sip:" + p.addr.String(), AllowInboundFrom: []string{"127.0.0.1/32"}}
}

// sdp returns an answer/offer pointing at the peer's RTP socket.
func (p *fakePeer) sdp(dir Direction, codecs ...string) []byte {
	port := p.rtp.LocalAddr().(*net.UDPAddr).Port
	return buildSDP(sdpParams{Addr: netip.MustParseAddr("127.0.0.1"), Port: port, Codecs: codecList(codecs), DTMFPT: 101, Direction: dir, SessionID: 7, Version: 1})
}

// sdpResponse answers req with code and SDP.
func sdpResponse(req *sipmsg.Request, code int, reason string, body []byte) *sipmsg.Response {
	res := sipmsg.NewResponseFromRequest(req, code, reason, body)
	res.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	res.AppendHeader(&sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", Host: req.Destination()}})
	return res
}

// checkDigest verifies an Authorization header against user/pass, as a
// registrar would. It returns false when absent or wrong.
func checkDigest(req *sipmsg.Request, chal *digest.Challenge, user, pass string) bool {
	h := req.GetHeader("Authorization")
	if h == nil {
		return false
	}
	creds, err := digest.ParseCredentials(h.Value())
	if err != nil || creds.Username != user {
		return false
	}
	want, err := digest.Digest(chal, digest.Options{Method: req.Method.String(), URI: creds.URI, Username: user, Password: pass, Cnonce: creds.Cnonce, Count: creds.Nc})
	return err == nil && want.Response == creds.Response
}

func itoa(n int) string { return strconv.Itoa(n) }

func ulaw(v int16) byte { return g711.EncodeUlawFrame(v) }

func testLoggerB() *slog.Logger { return slog.New(slog.DiscardHandler) }
