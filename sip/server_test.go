package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// request sends a request from peer p to server s and returns the final response.
func (p *fakePeer) request(t *testing.T, s *Server, method sipmsg.RequestMethod, user string, body []byte, timeout time.Duration) (*sipmsg.Response, error) {
	t.Helper()
	req := sipmsg.NewRequest(method, sipmsg.Uri{Scheme: "sip", User: user, Host: "127.0.0.1", Port: int(s.Addr("udp").Port())})
	req.AppendHeader(&sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: "pbx", Host: p.addr.Addr().String(), Port: int(p.addr.Port())}})
	if body != nil {
		req.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
		req.SetBody(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.cli.Do(ctx, req)
}

func TestInboundAllowList(t *testing.T) {
	var handled atomic.Int32
	h := func(ctx context.Context, in *InboundCall) error {
		handled.Add(1)
		return &StatusError{Code: 486, Reason: "Busy Here"}
	}
	// scanner_silence off: outsiders get one 403 each.
	s, _ := startServerCfg(t, Config{Listen: []string{"udp:127.0.0.1:0"}, ScannerSilence: new(false)},
		[]TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}}, WithInviteHandler(h))

	allowed := newFakePeer(t, nil)
	res, err := allowed.request(t, s, sipmsg.INVITE, "conv-1", allowed.sdp(SendRecv, "PCMU"), 5*time.Second)
	if err != nil || res.StatusCode != 486 {
		t.Fatalf("allowed INVITE: %v %v, want 486 from the handler", res, err)
	}
	res, err = allowed.request(t, s, sipmsg.OPTIONS, "", nil, 5*time.Second)
	if err != nil || res.StatusCode != 200 || res.GetHeader("Allow") == nil {
		t.Fatalf("allowed OPTIONS: %v %v", res, err)
	}

	stranger := newFakePeerOn(t, "127.0.0.2")
	for _, m := range []sipmsg.RequestMethod{sipmsg.INVITE, sipmsg.OPTIONS, sipmsg.REGISTER, sipmsg.MESSAGE} {
		var body []byte
		if m == sipmsg.INVITE {
			body = stranger.sdp(SendRecv, "PCMU")
		}
		res, err := stranger.request(t, s, m, "conv-1", body, 5*time.Second)
		if err != nil || res.StatusCode != 403 {
			t.Errorf("%s from stranger: %v %v, want 403", m, res, err)
		}
	}
	if handled.Load() != 1 {
		t.Errorf("handler ran %d times, want 1", handled.Load())
	}
	if s.ActiveCalls() != 0 {
		t.Errorf("%d calls left", s.ActiveCalls())
	}
}

func newFakePeerOn(t *testing.T, ip string) *fakePeer {
	p := newIdlePeerOn(t, ip)
	p.serve(nil)
	return p
}

func TestScannerSilence(t *testing.T) {
	// scanner_silence is on by default.
	s, _ := startServerCfg(t, Config{Listen: []string{"udp:127.0.0.1:0"}},
		[]TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}})
	stranger := newFakePeerOn(t, "127.0.0.2")
	res, err := stranger.request(t, s, sipmsg.OPTIONS, "", nil, 700*time.Millisecond)
	if err == nil {
		t.Fatalf("scanner got an answer: %v", res)
	}
	friend := newFakePeer(t, nil)
	if res, err := friend.request(t, s, sipmsg.OPTIONS, "", nil, 5*time.Second); err != nil || res.StatusCode != 200 {
		t.Fatalf("allowed peer after scanner: %v %v", res, err)
	}
}

func TestInboundCallAnsweredAndHungUpByPBX(t *testing.T) {
	heard := newRecorder()
	calls := make(chan *Call, 1)
	s := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}},
		WithInviteHandler(func(ctx context.Context, in *InboundCall) error {
			if in.User() != "conv-77" || in.Trunk() != "pbx" {
				return &StatusError{Code: 404, Reason: "Not Found"}
			}
			c, err := in.Answer(ctx, heard)
			if err != nil {
				return err
			}
			calls <- c
			return nil
		}))
	p := newIdlePeer(t)
	dcc := sipgo.NewDialogClientCache(p.cli, sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: "pbx", Host: "127.0.0.1", Port: int(p.addr.Port())}})
	p.serve(map[sipmsg.RequestMethod]sipgo.RequestHandler{
		sipmsg.BYE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) { _ = dcc.ReadBye(req, tx) },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	target := sipmsg.Uri{Scheme: "sip", User: "conv-77", Host: "127.0.0.1", Port: int(s.Addr("udp").Port())}
	dc, err := dcc.Invite(ctx, target, p.sdp(SendRecv, "PCMA", "PCMU"), sipmsg.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		t.Fatal(err)
	}
	if err := dc.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := dc.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	c := <-calls
	if c.Codec() != "PCMA" || !c.Inbound() {
		t.Errorf("codec %s inbound %v", c.Codec(), c.Inbound())
	}
	md, err := parseSDP(dc.InviteResponse.Body())
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	go sendToneRTP(p, md.remote(), 700, stop)
	waitFor(t, "audio from the PBX", func() bool { return len(heard.Samples()) >= 4000 })
	close(stop)
	// The PBX sent PCMU (pt 0) though PCMA was chosen: decode by payload type.
	if f := peakFreq(heard.Samples()); f < 690 || f > 710 {
		t.Errorf("peak %v Hz, want 700", f)
	}
	if err := dc.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	if e := waitEvent(t, c, EventHangup); !errors.Is(e.Cause, ErrRemoteHangup) {
		t.Errorf("cause %v", e.Cause)
	}
	c.Close()
	waitFor(t, "slot released", func() bool { return s.ActiveCalls() == 0 })
}

func TestCallLimits(t *testing.T) {
	inbound := make(chan *Call, 4)
	answer := func(ctx context.Context, in *InboundCall) error {
		c, err := in.Answer(ctx, nil)
		if err == nil {
			inbound <- c
		}
		return err
	}
	b := startServer(t, []TrunkConfig{{Name: "gw", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}},
		WithInviteHandler(answer), WithMaxCalls(1))
	a := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:" + b.Addr("udp").String(), MaxCalls: 2}})
	ctx := context.Background()
	first, err := a.Dial(ctx, "pbx", "sip:conv-1@127.0.0.1", DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	<-inbound
	// b is at its global limit: 503 with Retry-After.
	_, err = a.Dial(ctx, "pbx", "sip:conv-2@127.0.0.1", DialOptions{})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 503 || se.RetryAfter == 0 {
		t.Fatalf("second call: %v, want 503 with Retry-After", err)
	}
	s := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:9", MaxCalls: 1}}, WithMaxCalls(5))
	rel, err := s.acquire(s.trunkTable().byName["pbx"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Dial(ctx, "pbx", "1001", DialOptions{}); !errors.Is(err, ErrLimit) {
		t.Errorf("over trunk limit: %v", err)
	}
	rel()
	g := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:9"}}, WithMaxCalls(1))
	rel, _ = g.acquire(g.trunkTable().byName["pbx"])
	if _, err := g.Dial(ctx, "pbx", "1001", DialOptions{}); !errors.Is(err, ErrLimit) {
		t.Errorf("over global limit: %v", err)
	}
	rel()
}

// registrar is a fake registrar that challenges every first REGISTER.
type registrar struct {
	mu       sync.Mutex
	algo     string
	grant    int
	failN    int // refuse this many first
	ok       int
	expires  []string
	failures int
}

func (r *registrar) handler(t *testing.T) sipgo.RequestHandler {
	chal := &digest.Challenge{Realm: "pbx.test", Nonce: "abc123", Algorithm: r.algo, QOP: []string{"auth"}}
	return func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.failures < r.failN {
			r.failures++
			finalResponse(403, "Forbidden")(req, tx)
			return
		}
		if !checkDigest(req, chal, "segue", "pw") {
			finalResponse(401, "Unauthorized", sipmsg.NewHeader("WWW-Authenticate", chal.String()))(req, tx)
			return
		}
		exp := req.GetHeader("Expires").Value()
		r.expires = append(r.expires, exp)
		r.ok++
		res := sipmsg.NewResponseFromRequest(req, 200, "OK", nil)
		if exp != "0" {
			ct := req.Contact().Clone()
			ct.Params = sipmsg.NewParams()
			ct.Params.Add("expires", strconv.Itoa(r.grant))
			res.AppendHeader(ct)
		}
		_ = tx.Respond(res)
	}
}

func (r *registrar) snapshot() (ok int, expires []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ok, append([]string(nil), r.expires...)
}

func TestRegisterRefreshAndUnregister(t *testing.T) {
	for _, algo := range []string{"MD5", "SHA-256"} {
		t.Run(algo, func(t *testing.T) {
			reg := &registrar{algo: algo, grant: 2}
			p := newFakePeer(t, map[sipmsg.RequestMethod]sipgo.RequestHandler{sipmsg.REGISTER: reg.handler(t)})
			tc := p.trunk("pbx")
			tc.Register, tc.Username, tc.Password, tc.RegisterExpiry = true, "segue", "pw", 300
			s, stop := startServerCfg(t, Config{Listen: []string{"udp:127.0.0.1:0"}}, []TrunkConfig{tc})
			waitFor(t, "registered", func() bool { return s.TrunkStatus()[0].Registered })
			st := s.TrunkStatus()[0]
			if !st.Ready() || st.RegisterError != "" {
				t.Errorf("state %+v", st)
			}
			waitFor(t, "a refresh", func() bool { ok, _ := reg.snapshot(); return ok >= 2 })
			stop()
			_, exp := reg.snapshot()
			if exp[0] != "300" || exp[len(exp)-1] != "0" {
				t.Errorf("Expires sent: %v, want 300 first and 0 on shutdown", exp)
			}
		})
	}
}

func TestRegisterBacksOffAndRecovers(t *testing.T) {
	reg := &registrar{grant: 60, failN: 1}
	p := newFakePeer(t, map[sipmsg.RequestMethod]sipgo.RequestHandler{sipmsg.REGISTER: reg.handler(t)})
	tc := p.trunk("pbx")
	tc.Register, tc.Username, tc.Password = true, "segue", "pw"
	s := startServer(t, []TrunkConfig{tc})
	waitFor(t, "a failure recorded", func() bool { return strings.Contains(s.TrunkStatus()[0].RegisterError, "403") })
	if s.TrunkStatus()[0].Ready() {
		t.Error("ready while unregistered")
	}
	waitFor(t, "registered after backoff", func() bool { return s.TrunkStatus()[0].Registered })
}

func TestOptionsKeepalive(t *testing.T) {
	var pings atomic.Int32
	p := newFakePeer(t, map[sipmsg.RequestMethod]sipgo.RequestHandler{
		sipmsg.OPTIONS: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			pings.Add(1)
			finalResponse(200, "OK")(req, tx)
		},
	})
	up := p.trunk("up")
	up.OptionsInterval = 1
	s := startServer(t, []TrunkConfig{up})
	waitFor(t, "reachable", func() bool { return s.TrunkStatus()[0].Reachable })
	waitFor(t, "second ping", func() bool { return pings.Load() >= 2 })
	if st := s.TrunkStatus()[0]; !st.Ready() || st.OptionsRTT <= 0 {
		t.Errorf("state %+v", st)
	}
}

func TestGarbageDoesNotStopServer(t *testing.T) {
	s := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}})
	c, err := net.Dial("udp", s.Addr("udp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Via points back at this socket so that any 400 comes here.
	me := c.LocalAddr().String()
	for _, g := range []string{
		"\x00\x01\x02garbage",
		"INVITE sip:x SIP/2.0\r\n\r\n",
		"INVITE sip:conv-1@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + me + ";branch=z9hG4bK1\r\nFrom: <>\r\nTo: \r\nCall-ID: a\r\nCSeq: x INVITE\r\nContent-Length: 99999\r\n\r\n",
		"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + me + ";branch=z9hG4bK2\r\nContent-Length: 0\r\n\r\n",
		"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP " + me + ";branch=z9hG4bK3\r\n\r\n",
	} {
		if _, err := c.Write([]byte(g)); err != nil {
			t.Fatal(err)
		}
	}
	p := newFakePeer(t, nil)
	if res, err := p.request(t, s, sipmsg.OPTIONS, "", nil, 5*time.Second); err != nil || res.StatusCode != 200 {
		t.Fatalf("after garbage: %v %v", res, err)
	}
}

func TestInboundCancelledWhileRinging(t *testing.T) {
	ringing := make(chan struct{})
	handlerDone := make(chan error, 1)
	s := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}},
		WithInviteHandler(func(ctx context.Context, in *InboundCall) error {
			if err := in.Ringing(); err != nil {
				return err
			}
			close(ringing)
			<-ctx.Done() // the customer's browser would be ringing here
			handlerDone <- ctx.Err()
			return ctx.Err()
		}))
	p := newIdlePeer(t)
	dcc := sipgo.NewDialogClientCache(p.cli, sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: "pbx", Host: "127.0.0.1", Port: int(p.addr.Port())}})
	p.serve(nil)
	ctx, cancel := context.WithCancel(context.Background())
	target := sipmsg.Uri{Scheme: "sip", User: "conv-4", Host: "127.0.0.1", Port: int(s.Addr("udp").Port())}
	dc, err := dcc.Invite(ctx, target, p.sdp(SendRecv, "PCMU"), sipmsg.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		t.Fatal(err)
	}
	go func() { <-ringing; cancel() }()
	if err := dc.WaitAnswer(ctx, sipgo.AnswerOptions{}); err == nil {
		t.Fatal("answered")
	}
	if dc.InviteResponse == nil || dc.InviteResponse.StatusCode != 487 {
		t.Errorf("final response %v, want 487", dc.InviteResponse)
	}
	select {
	case err := <-handlerDone:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("handler ctx ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler context not cancelled by CANCEL")
	}
	waitFor(t, "slot released", func() bool { return s.ActiveCalls() == 0 })
}

func TestInboundDelayedOffer(t *testing.T) {
	calls := make(chan *Call, 1)
	s := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}},
		WithInviteHandler(func(ctx context.Context, in *InboundCall) error {
			c, err := in.Answer(ctx, nil)
			if err == nil {
				calls <- c
			}
			return err
		}))
	p := newIdlePeer(t)
	dcc := sipgo.NewDialogClientCache(p.cli, sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: "pbx", Host: "127.0.0.1", Port: int(p.addr.Port())}})
	p.serve(map[sipmsg.RequestMethod]sipgo.RequestHandler{
		sipmsg.BYE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) { _ = dcc.ReadBye(req, tx) },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	target := sipmsg.Uri{Scheme: "sip", User: "conv-6", Host: "127.0.0.1", Port: int(s.Addr("udp").Port())}
	dc, err := dcc.Invite(ctx, target, nil) // no SDP: a delayed offer
	if err != nil {
		t.Fatal(err)
	}
	if err := dc.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatal(err)
	}
	ourOffer, err := parseSDP(dc.InviteResponse.Body())
	if err != nil || len(ourOffer.Formats) < 3 {
		t.Fatalf("offer in 200: %v %v", ourOffer, err)
	}
	ack := sipmsg.NewRequest(sipmsg.ACK, dc.InviteResponse.Contact().Address)
	ack.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	ack.SetBody(p.sdp(SendRecv, "PCMA"))
	if err := dc.WriteAck(ctx, ack); err != nil {
		t.Fatal(err)
	}
	c := <-calls
	go playTone(ctx, c.AudioIn(), 1000)
	pkts := readRTP(t, p.rtp, 30)
	if pkts[len(pkts)-1].PayloadType != 8 {
		t.Errorf("payload type %d, want PCMA from the answer in the ACK", pkts[len(pkts)-1].PayloadType)
	}
	if err := dc.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, c, EventHangup)
	c.Close()
}

// TestInviteRefusedByHandlerCarriesRetryAfter: an invite handler that
// refuses for capacity (ErrLimit, or a 503 StatusError with RetryAfter)
// makes the caller see 503 with Retry-After (RFC 3261 §21.5.4, §20.33).
func TestInviteRefusedByHandlerCarriesRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name string
		herr error
		want int
	}{
		{"limit", fmt.Errorf("gateway full: %w", ErrLimit), LimitRetryAfter},
		{"status", &StatusError{Code: 503, Reason: "Service Unavailable", RetryAfter: 42}, 42},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refuse := func(context.Context, *InboundCall) error { return tc.herr }
			b := startServer(t, []TrunkConfig{{Name: "gw", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}},
				WithInviteHandler(refuse))
			a := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:" + b.Addr("udp").String()}})
			_, err := a.Dial(context.Background(), "pbx", "sip:conv-1@127.0.0.1", DialOptions{})
			var se *StatusError
			if !errors.As(err, &se) || se.Code != 503 || se.RetryAfter != tc.want {
				t.Fatalf("refused call: %v (%+v), want 503 with Retry-After %d", err, se, tc.want)
			}
		})
	}
}
