package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

func TestInboundDigestAuth(t *testing.T) {
	users := make(chan string, 4)
	s := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:5999", Username: "pbx", Password: "pw", InboundAuth: true}},
		WithInviteHandler(func(ctx context.Context, in *InboundCall) error {
			users <- in.User()
			c, err := in.Answer(ctx, nil)
			if err != nil {
				return err
			}
			go func() { <-c.Done(); c.Close() }()
			return nil
		}))
	p := newIdlePeer(t)
	dcc := sipgo.NewDialogClientCache(p.cli, sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: "pbx", Host: "127.0.0.1", Port: int(p.addr.Port())}})
	p.serve(map[sipmsg.RequestMethod]sipgo.RequestHandler{
		sipmsg.BYE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) { _ = dcc.ReadBye(req, tx) },
	})
	call := func(user, pass string) (*sipgo.DialogClientSession, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		target := sipmsg.Uri{Scheme: "sip", User: "conv-3", Host: "127.0.0.1", Port: int(s.Addr("udp").Port())}
		dc, err := dcc.Invite(ctx, target, p.sdp(SendRecv, "PCMU"), sipmsg.NewHeader("Content-Type", "application/sdp"))
		if err != nil {
			return nil, err
		}
		if err := dc.WaitAnswer(ctx, sipgo.AnswerOptions{Username: user, Password: pass}); err != nil {
			return nil, err
		}
		return dc, dc.Ack(ctx)
	}
	for _, bad := range [][2]string{{"", ""}, {"pbx", "wrong"}, {"other", "pw"}} {
		_, err := call(bad[0], bad[1])
		var de *sipgo.ErrDialogResponse
		if !errors.As(err, &de) || de.Res.StatusCode != 401 {
			t.Errorf("credentials %q: %v, want 401", bad, err)
		}
	}
	dc, err := call("pbx", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if u := <-users; u != "conv-3" {
		t.Errorf("user %q", u)
	}
	if len(users) != 0 {
		t.Error("handler ran for an unauthenticated INVITE")
	}
	if err := dc.Bye(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "slot released", func() bool { return s.ActiveCalls() == 0 })
}

func TestNonceExpiry(t *testing.T) {
	k := newNonceKey()
	now := time.Now()
	n := k.nonce(now)
	if !k.valid(n, now.Add(time.Minute)) {
		t.Error("fresh nonce refused")
	}
	if k.valid(n, now.Add(nonceLife+time.Minute)) {
		t.Error("stale nonce accepted")
	}
	if k.valid(n+"0", now) || newNonceKey().valid(n, now) {
		t.Error("forged nonce accepted")
	}
	if k.nonce(now) == n {
		t.Error("two challenges in the same second share a nonce")
	}
}

// rawUAC speaks SIP over a bare UDP socket, so that a test controls
// every byte of the Authorization header, replays included.
type rawUAC struct {
	t    *testing.T
	conn *net.UDPConn
	srv  netip.AddrPort
	n    int
}

func newRawUAC(t *testing.T, ip string, srv netip.AddrPort) *rawUAC {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawUAC{t: t, conn: c, srv: srv}
}

// ruri is the Request-URI for a call to conv-<id> at the server.
func (u *rawUAC) ruri(user string) string { return "sip:" + user + "@" + u.srv.String() }

// invite sends a new INVITE (new Call-ID, tag and branch) to ruri with the
// Authorization header authz ("" for none) and returns its final
// response, or nil when none came within a second. Final failures are not
// acknowledged: an ACK still in flight when a test ends races the
// server's shutdown, and sipgo then opens a socket for it that nobody
// closes. The server's retransmissions of earlier answers are skipped.
func (u *rawUAC) invite(ruri, authz string) *sipmsg.Response {
	u.t.Helper()
	u.n++
	local := u.conn.LocalAddr().String()
	branch := fmt.Sprintf("z9hG4bK-raw-%d-%d", time.Now().UnixNano(), u.n)
	callID := fmt.Sprintf("raw-%d-%d@test", time.Now().UnixNano(), u.n)
	msg := "INVITE " + ruri + " SIP/2.0\r\n" +
		fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=%s;rport\r\n", local, branch) +
		fmt.Sprintf("From: <sip:pbx@%s>;tag=raw%d\r\n", local, u.n) +
		"To: <" + ruri + ">\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:pbx@" + local + ">\r\n" +
		"Max-Forwards: 70\r\n"
	if authz != "" {
		msg += "Authorization: " + authz + "\r\n"
	}
	msg += "Content-Length: 0\r\n\r\n"
	if _, err := u.conn.WriteToUDPAddrPort([]byte(msg), u.srv); err != nil {
		u.t.Fatal(err)
	}
	buf := make([]byte, 65536)
	deadline := time.Now().Add(time.Second)
	for {
		_ = u.conn.SetReadDeadline(deadline)
		n, err := u.conn.Read(buf)
		if err != nil {
			return nil
		}
		m, err := sipmsg.ParseMessage(buf[:n])
		if err != nil {
			u.t.Fatalf("unparsable answer: %v\n%s", err, buf[:n])
		}
		res, ok := m.(*sipmsg.Response)
		if ok && res.StatusCode >= 200 && res.CallID() != nil && res.CallID().Value() == callID {
			return res
		}
	}
}

// answer computes an Authorization header value for a 401's first
// challenge.
func answer(t *testing.T, res *sipmsg.Response, ruri, user, pass string, nc int, qop bool) string {
	t.Helper()
	if res == nil || res.StatusCode != 401 {
		t.Fatalf("want a 401 challenge, got %v", res)
	}
	chal, err := digest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	if err != nil {
		t.Fatal(err)
	}
	if !qop {
		chal.QOP = nil
	}
	creds, err := digest.Digest(chal, digest.Options{Method: "INVITE", URI: ruri, Username: user, Password: pass, Count: nc, Cnonce: "0a4f113b"})
	if err != nil {
		t.Fatal(err)
	}
	return creds.String()
}

// authServer runs a server with one inbound_auth trunk that allows
// nobody by address, so every test client authenticates. Its handler
// reports the called user and rejects the call with 486: a 486 proves
// the credentials were accepted.
func authServer(t *testing.T, tc TrunkConfig, opts ...Option) (*Server, chan string) {
	t.Helper()
	reached := make(chan string, 16)
	tc.Name, tc.URI, tc.InboundAuth, tc.AllowInboundFrom = "pbx", "sip:192.0.2.10", true, []string{"192.0.2.10/32"}
	// The per-address budget of answers to outsiders (10, then 2 a
	// second; TestOutsiderRefusedStatelessly) would silence these tests'
	// callers on its own: lift it, so that what they see is the digest
	// checks alone.
	lift := func(s *Server) error { s.outsiders = newSourceLimiter(1000, 1000, outsiderSources); return nil }
	s := startServer(t, []TrunkConfig{tc}, append(append(opts, lift), WithInviteHandler(func(ctx context.Context, in *InboundCall) error {
		reached <- in.User()
		return &StatusError{Code: 486, Reason: "Busy Here"}
	}))...)
	return s, reached
}

func code(res *sipmsg.Response) int {
	if res == nil {
		return 0
	}
	return res.StatusCode
}

// TestInboundDigestReplayRefused: a captured Authorization header sent
// again in a new INVITE is refused; the same nonce with a higher
// nonce-count is fine (RFC 7616 §3.4), a lower or equal one is not, and a
// nonce used without qop is good once.
func TestInboundDigestReplayRefused(t *testing.T) {
	s, reached := authServer(t, TrunkConfig{Username: "pbx", Password: "pw"})
	u := newRawUAC(t, "127.0.0.1", s.Addr("udp"))
	ruri := u.ruri("conv-7")
	chal := u.invite(ruri, "")
	first := answer(t, chal, ruri, "pbx", "pw", 1, true)
	if c := code(u.invite(ruri, first)); c != 486 || <-reached != "conv-7" {
		t.Fatalf("good credentials: %d", c)
	}
	if c := code(u.invite(ruri, first)); c != 401 {
		t.Errorf("replayed Authorization: %d, want 401", c)
	}
	if c := code(u.invite(ruri, answer(t, chal, ruri, "pbx", "pw", 2, true))); c != 486 {
		t.Errorf("the same nonce with nc=2: %d, want 486", c)
	}
	<-reached
	for _, nc := range []int{2, 1} {
		if c := code(u.invite(ruri, answer(t, chal, ruri, "pbx", "pw", nc, true))); c != 401 {
			t.Errorf("the same nonce with nc=%d again: %d, want 401", nc, c)
		}
	}

	chal = u.invite(ruri, "")
	noQOP := answer(t, chal, ruri, "pbx", "pw", 0, false)
	if c := code(u.invite(ruri, noQOP)); c != 486 {
		t.Fatalf("good credentials without qop: %d", c)
	}
	<-reached
	if c := code(u.invite(ruri, noQOP)); c != 401 {
		t.Errorf("a nonce without qop used twice: %d, want 401", c)
	}
	if len(reached) != 0 {
		t.Error("the handler ran for a replay")
	}
}

// TestInboundDigestURIChecked: credentials computed for another
// Request-URI (another conversation) do not open this one.
func TestInboundDigestURIChecked(t *testing.T) {
	s, reached := authServer(t, TrunkConfig{Username: "pbx", Password: "pw"})
	u := newRawUAC(t, "127.0.0.1", s.Addr("udp"))
	ruri := u.ruri("conv-7")
	for _, other := range []string{u.ruri("conv-8"), "sip:conv-7@192.0.2.99", "sip:conv-7@" + s.Addr("udp").Addr().String()} {
		chal := u.invite(ruri, "")
		if c := code(u.invite(ruri, answer(t, chal, other, "pbx", "pw", 1, true))); c != 401 {
			t.Errorf("digest uri %s for %s: %d, want 401", other, ruri, c)
		}
	}
	chal := u.invite(ruri, "")
	if c := code(u.invite(ruri, answer(t, chal, strings.ToUpper(ruri[:3])+ruri[3:], "pbx", "pw", 1, true))); c != 486 {
		t.Errorf("digest uri with the scheme in capitals: %d, want 486", c)
	}
	if u := <-reached; u != "conv-7" || len(reached) != 0 {
		t.Errorf("handler reached for %q (%d more)", u, len(reached))
	}
}

// TestInboundDigestSilencesAfterFailures: five wrong passwords from one
// address get 401 each; from the sixth on that address gets no answer at
// all, the right password included, while another address still gets
// challenged; after the lockout the address may try again.
func TestInboundDigestSilencesAfterFailures(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	s, reached := authServer(t, TrunkConfig{Username: "pbx", Password: "pw"}, func(s *Server) error {
		s.auth.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		return nil
	})
	u := newRawUAC(t, "127.0.0.1", s.Addr("udp"))
	ruri := u.ruri("conv-7")
	for i := 1; i <= authMaxFailures; i++ {
		chal := u.invite(ruri, "")
		if c := code(u.invite(ruri, answer(t, chal, ruri, "pbx", fmt.Sprintf("guess%d", i), 1, true))); c != 401 {
			t.Fatalf("failure %d: %d, want 401", i, c)
		}
	}
	chal := u.invite(ruri, "")
	if c := code(u.invite(ruri, answer(t, chal, ruri, "pbx", "guess6", 1, true))); c != 0 {
		t.Fatalf("failure %d: %d, want no answer", authMaxFailures+1, c)
	}
	if c := code(u.invite(ruri, "")); c != 0 {
		t.Errorf("a silenced address got %d to an INVITE without credentials", c)
	}
	if c := code(u.invite(ruri, answer(t, chal, ruri, "pbx", "pw", 2, true))); c != 0 {
		t.Errorf("a silenced address got %d with the right password", c)
	}
	other := newRawUAC(t, "127.0.0.2", s.Addr("udp"))
	if c := code(other.invite(ruri, "")); c != 401 {
		t.Errorf("another address got %d, want 401", c)
	}
	if len(reached) != 0 {
		t.Fatal("the handler ran for a silenced address")
	}

	mu.Lock()
	now = now.Add(authLockout + time.Second)
	mu.Unlock()
	chal = u.invite(ruri, "")
	if c := code(u.invite(ruri, answer(t, chal, ruri, "pbx", "pw", 1, true))); c != 486 || <-reached != "conv-7" {
		t.Errorf("after the lockout the right password got %d, want 486", c)
	}
}

// TestInboundDigestSeparateCredentials: with inbound_username and
// inbound_password set, only they open inbound calls; the outbound
// (registration) credentials do not.
func TestInboundDigestSeparateCredentials(t *testing.T) {
	s, reached := authServer(t, TrunkConfig{Username: "segue", Password: "register-pw", InboundUsername: "pbx-in", InboundPassword: "inbound-pw"})
	u := newRawUAC(t, "127.0.0.1", s.Addr("udp"))
	ruri := u.ruri("conv-7")
	for _, creds := range [][2]string{{"segue", "register-pw"}, {"pbx-in", "register-pw"}, {"segue", "inbound-pw"}} {
		chal := u.invite(ruri, "")
		if c := code(u.invite(ruri, answer(t, chal, ruri, creds[0], creds[1], 1, true))); c != 401 {
			t.Errorf("credentials %q: %d, want 401", creds, c)
		}
	}
	chal := u.invite(ruri, "")
	if c := code(u.invite(ruri, answer(t, chal, ruri, "pbx-in", "inbound-pw", 1, true))); c != 486 || <-reached != "conv-7" {
		t.Errorf("inbound credentials: %d, want 486", c)
	}
}

func TestInboundDigestStaleNonce(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	s, reached := authServer(t, TrunkConfig{Username: "pbx", Password: "pw"}, func(s *Server) error {
		s.auth.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		return nil
	})
	u := newRawUAC(t, "127.0.0.1", s.Addr("udp"))
	ruri := u.ruri("conv-7")
	chal := u.invite(ruri, "")
	mu.Lock()
	now = now.Add(nonceLife + time.Minute)
	mu.Unlock()
	// Aged nonces are no failures: far more of them than the failure
	// limit still get a challenge, marked stale.
	for i := 0; i <= authMaxFailures+1; i++ {
		res := u.invite(ruri, answer(t, chal, ruri, "pbx", "pw", 1, true))
		if code(res) != 401 || !strings.Contains(res.GetHeader("WWW-Authenticate").Value(), "stale=true") {
			t.Fatalf("attempt %d with an aged nonce: %v, want 401 with stale=true", i, res)
		}
	}
	chal = u.invite(ruri, "")
	if c := code(u.invite(ruri, answer(t, chal, ruri, "pbx", "pw", 1, true))); c != 486 || <-reached != "conv-7" {
		t.Errorf("with a fresh nonce: %d, want 486", c)
	}
}

func TestNonceTrackerBounded(t *testing.T) {
	k := newNonceKey()
	tr := newNonceTracker(3)
	now := time.Now()
	var ns []string
	for i := 0; i < 5; i++ {
		at := now.Add(time.Duration(i) * time.Second)
		n := k.nonce(at)
		ns = append(ns, n)
		if !tr.use(n, at, true, 1, now) {
			t.Fatalf("nonce %d refused", i)
		}
	}
	if len(tr.used) > 3 {
		t.Fatalf("%d nonces held, limit 3", len(tr.used))
	}
	for i, n := range ns[:2] {
		at, _ := k.issued(n)
		if !tr.stale(n, at) || tr.use(n, at, true, 2, now) {
			t.Errorf("forgotten nonce %d can be used again", i)
		}
	}
	at, _ := k.issued(ns[4])
	if tr.stale(ns[4], at) || tr.use(ns[4], at, true, 1, now) || !tr.use(ns[4], at, true, 2, now) {
		t.Error("nonce-count not tracked for a held nonce")
	}
}

func TestFailureLimiterBounded(t *testing.T) {
	l := newFailureLimiter(2)
	now := time.Now()
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	for i := 0; i <= authMaxFailures; i++ {
		l.fail(a, now)
	}
	if !l.silenced(a, now) {
		t.Fatal("not silenced")
	}
	l.succeed(b)
	l.fail(b, now.Add(time.Second))
	l.fail(c, now.Add(2*time.Second))
	if len(l.sources) > 2 {
		t.Fatalf("%d sources held, limit 2", len(l.sources))
	}
	if !l.silenced(a, now) {
		t.Fatal("new sources lifted a silence")
	}
	// One IPv6 host owns its /64: addresses in it share one count.
	v6 := netip.MustParseAddr("2001:db8::1")
	for i := 0; i <= authMaxFailures; i++ {
		l.fail(v6.Next(), now)
		v6 = v6.Next()
	}
	if !l.silenced(netip.MustParseAddr("2001:db8::ffff"), now) {
		t.Error("failures from one /64 not counted together")
	}
	if l.silenced(netip.MustParseAddr("2001:db8:0:1::1"), now) {
		t.Error("another /64 silenced")
	}
	if !l.silenced(a, now) || len(l.sources) > 2 {
		t.Errorf("silence of %v lost, or %d sources held", a, len(l.sources))
	}
}
