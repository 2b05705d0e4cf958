package sip

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

func finalResponse(code int, reason string, hdrs ...sipmsg.Header) sipgo.RequestHandler {
	return func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		res := sipmsg.NewResponseFromRequest(req, code, reason, nil)
		res.To().Params.Add("tag", "peer")
		for _, h := range hdrs {
			res.AppendHeader(h)
		}
		_ = tx.Respond(res)
		if req.IsInvite() && code >= 300 {
			// Absorb the ACK in this transaction before the test ends.
			select {
			case <-tx.Acks():
			case <-tx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}
}

func TestDialFinalFailures(t *testing.T) {
	for _, tc := range []struct {
		code       int
		reason     string
		hdrs       []sipmsg.Header
		is         error
		retryAfter int
	}{
		{486, "Busy Here", nil, ErrBusy, 0},
		{600, "Busy Everywhere", nil, ErrBusy, 0},
		{503, "Service Unavailable", []sipmsg.Header{sipmsg.NewHeader("Retry-After", "30")}, ErrUnavailable, 30},
		{404, "Not Found", nil, ErrUnavailable, 0},
		{480, "Temporarily Unavailable", nil, ErrNoAnswer, 0},
		{603, "Decline", nil, ErrRejected, 0},
		{403, "Forbidden", nil, ErrRejected, 0},
	} {
		t.Run(itoa(tc.code), func(t *testing.T) {
			p := newFakePeer(t, map[sipmsg.RequestMethod]sipgo.RequestHandler{sipmsg.INVITE: finalResponse(tc.code, tc.reason, tc.hdrs...)})
			s := startServer(t, []TrunkConfig{p.trunk("pbx")})
			_, err := s.Dial(context.Background(), "pbx", "1001", DialOptions{})
			var se *StatusError
			if !errors.As(err, &se) || se.Code != tc.code || !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want status %d matching %v", err, tc.code, tc.is)
			}
			if se.RetryAfter != tc.retryAfter {
				t.Errorf("retry after %d, want %d", se.RetryAfter, tc.retryAfter)
			}
			for _, other := range []error{ErrBusy, ErrNoAnswer, ErrUnavailable, ErrRejected} {
				if other != tc.is && errors.Is(err, other) {
					t.Errorf("%d also matches %v", tc.code, other)
				}
			}
			waitFor(t, "call slot released", func() bool { return s.ActiveCalls() == 0 })
		})
	}
}

// answeringPeer is a fake PBX that answers INVITEs through a sipgo
// dialog and hands each dialog to the test.
func answeringPeer(t *testing.T, dir Direction, check func(req *sipmsg.Request, tx sipmsg.ServerTransaction) bool) (*fakePeer, chan *sipgo.DialogServerSession) {
	return answeringPeerWith(t, dir, check, nil)
}

// answeringPeerWith also takes extra handlers and 200 OK headers.
func answeringPeerWith(t *testing.T, dir Direction, check func(req *sipmsg.Request, tx sipmsg.ServerTransaction) bool, extra map[sipmsg.RequestMethod]sipgo.RequestHandler, okHdrs ...sipmsg.Header) (*fakePeer, chan *sipgo.DialogServerSession) {
	dialogs := make(chan *sipgo.DialogServerSession, 4)
	p := newIdlePeer(t)
	dsc := sipgo.NewDialogServerCache(p.cli, sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: "pbx", Host: "127.0.0.1", Port: int(p.addr.Port())}})
	handlers := map[sipmsg.RequestMethod]sipgo.RequestHandler{
		sipmsg.INVITE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			if check != nil && !check(req, tx) {
				return
			}
			ds, err := dsc.ReadInvite(req, tx)
			if err != nil {
				t.Error(err)
				return
			}
			_ = ds.Respond(180, "Ringing", nil)
			hdrs := append([]sipmsg.Header{sipmsg.NewHeader("Content-Type", "application/sdp")}, okHdrs...)
			if err := ds.Respond(200, "OK", p.sdp(dir, "PCMU", "PCMA"), hdrs...); err != nil {
				t.Error(err)
				return
			}
			dialogs <- ds
			// A dialog whose BYE could not be answered (the caller gave
			// up on it first) ends with the test.
			select {
			case <-ds.Context().Done():
			case <-t.Context().Done():
			}
		},
		sipmsg.ACK: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) { _ = dsc.ReadAck(req, tx) },
		sipmsg.BYE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) { _ = dsc.ReadBye(req, tx) },
	}
	for m, h := range extra {
		handlers[m] = h
	}
	p.serve(handlers)
	return p, dialogs
}

func TestDialDigestAuth(t *testing.T) {
	for _, algo := range []string{"MD5", "SHA-256"} {
		for _, proxy := range []bool{false, true} {
			name := algo + "/401"
			if proxy {
				name = algo + "/407"
			}
			t.Run(name, func(t *testing.T) {
				chal := &digest.Challenge{Realm: "pbx", Nonce: "n0nce" + algo, Algorithm: algo, QOP: []string{"auth"}}
				var challenged atomic.Int32
				p, dialogs := answeringPeer(t, SendRecv, func(req *sipmsg.Request, tx sipmsg.ServerTransaction) bool {
					hdr, code := "WWW-Authenticate", 401
					auth := req.GetHeader("Authorization")
					if proxy {
						hdr, code = "Proxy-Authenticate", 407
						auth = req.GetHeader("Proxy-Authorization")
					}
					if auth != nil {
						creds, _ := digest.ParseCredentials(auth.Value())
						want, _ := digest.Digest(chal, digest.Options{Method: "INVITE", URI: creds.URI, Username: "segue", Password: "s3cret", Cnonce: creds.Cnonce, Count: creds.Nc})
						if creds.Response == want.Response {
							return true
						}
					}
					challenged.Add(1)
					finalResponse(code, "Unauthorized", sipmsg.NewHeader(hdr, chal.String()))(req, tx)
					return false
				})
				tc := p.trunk("pbx")
				tc.Username, tc.Password = "segue", "s3cret"
				s := startServer(t, []TrunkConfig{tc})
				call, err := s.Dial(context.Background(), "pbx", "1001", DialOptions{})
				if err != nil {
					t.Fatal(err)
				}
				<-dialogs
				if challenged.Load() != 1 {
					t.Errorf("challenged %d times, want 1", challenged.Load())
				}
				if err := call.Close(); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func TestDialWrongPasswordFails(t *testing.T) {
	chal := &digest.Challenge{Realm: "pbx", Nonce: "abc", QOP: []string{"auth"}}
	p := newFakePeer(t, map[sipmsg.RequestMethod]sipgo.RequestHandler{
		sipmsg.INVITE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			if checkDigest(req, chal, "segue", "right") {
				t.Error("wrong password accepted")
			}
			finalResponse(401, "Unauthorized", sipmsg.NewHeader("WWW-Authenticate", chal.String()))(req, tx)
		},
	})
	tc := p.trunk("pbx")
	tc.Username, tc.Password = "segue", "wrong"
	s := startServer(t, []TrunkConfig{tc})
	_, err := s.Dial(context.Background(), "pbx", "1001", DialOptions{})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 401 || !errors.Is(err, ErrRejected) {
		t.Fatalf("err = %v, want 401", err)
	}
}

func TestDialCancelWhileRinging(t *testing.T) {
	invited := make(chan struct{})
	cancelled := make(chan struct{})
	p := newFakePeer(t, map[sipmsg.RequestMethod]sipgo.RequestHandler{
		sipmsg.INVITE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			res := sdpResponse(req, 183, "Session Progress", nil)
			res.SetBody(nil)
			res.To().Params.Add("tag", "ring")
			_ = tx.Respond(res)
			tx.OnCancel(func(*sipmsg.Request) { close(cancelled) })
			close(invited)
			<-tx.Done()
		},
	})
	s := startServer(t, []TrunkConfig{p.trunk("pbx")})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-invited; cancel() }()
	_, err := s.Dial(ctx, "pbx", "1001", DialOptions{})
	if !errors.Is(err, ErrCancelled) {
		t.Fatalf("err = %v, want ErrCancelled", err)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("peer saw no CANCEL")
	}
	waitFor(t, "call slot released", func() bool { return s.ActiveCalls() == 0 })
}

func TestDialEarlyMedia(t *testing.T) {
	heard := newRecorder()
	answer := make(chan struct{})
	p := newIdlePeer(t)
	p.serve(map[sipmsg.RequestMethod]sipgo.RequestHandler{
		sipmsg.INVITE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			res := sdpResponse(req, 183, "Session Progress", p.sdp(SendRecv, "PCMU"))
			res.To().Params.Add("tag", "early")
			_ = tx.Respond(res)
			// Ringback from the "PBX": a 425 Hz tone, before any answer.
			md, _ := parseSDP(req.Body())
			go sendToneRTP(p, md.remote(), 425, answer)
			<-answer
			res = sdpResponse(req, 486, "Busy Here", nil)
			res.SetBody(nil)
			res.To().Params.Add("tag", "early")
			_ = tx.Respond(res)
		},
	})
	s := startServer(t, []TrunkConfig{p.trunk("pbx")})
	var early atomic.Bool
	go func() {
		waitFor(t, "early media", func() bool { return len(heard.Samples()) >= 4000 })
		close(answer)
	}()
	_, err := s.Dial(context.Background(), "pbx", "1001", DialOptions{AudioOut: heard, OnProgress: func(pr Progress) {
		if pr.Code == 183 && pr.EarlyMedia {
			early.Store(true)
		}
	}})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("err = %v, want busy", err)
	}
	if !early.Load() {
		t.Error("no early media progress reported")
	}
	if f := peakFreq(heard.Samples()); f < 415 || f > 435 {
		t.Errorf("early media peak %v Hz, want 425", f)
	}
}

// sendToneRTP sends PCMU RTP with a tone from the peer's RTP socket until stop.
func sendToneRTP(p *fakePeer, to netip.AddrPort, freq float64, stop <-chan struct{}) {
	var ph float64
	seq, ts := uint16(1), uint32(0)
	buf := make([]byte, 172)
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		pcm := tone(freq, 0.5, 160, &ph)
		buf[0], buf[1] = 0x80, 0
		buf[2], buf[3] = byte(seq>>8), byte(seq)
		buf[4], buf[5], buf[6], buf[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
		buf[8], buf[9], buf[10], buf[11] = 1, 2, 3, 4
		for i, v := range pcm {
			buf[12+i] = ulaw(v)
		}
		seq++
		ts += 160
		if _, err := p.rtp.WriteToUDPAddrPort(buf, to); err != nil {
			return
		}
	}
}

func TestDialRedirectSameTrunkOnly(t *testing.T) {
	var port atomic.Int32
	p, dialogs := answeringPeer(t, SendRecv, func(req *sipmsg.Request, tx sipmsg.ServerTransaction) bool {
		switch req.Recipient.User {
		case "1001":
			finalResponse(302, "Moved Temporarily", &sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: "2002", Host: "127.0.0.1", Port: int(port.Load())}})(req, tx)
			return false
		case "3003":
			finalResponse(302, "Moved Temporarily", &sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: "900", Host: "198.51.100.7"}})(req, tx)
			return false
		}
		return req.Recipient.User == "2002"
	})
	port.Store(int32(p.addr.Port()))
	s := startServer(t, []TrunkConfig{p.trunk("pbx")})
	call, err := s.Dial(context.Background(), "pbx", "1001", DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ds := <-dialogs
	if u := ds.InviteRequest.Recipient.User; u != "2002" {
		t.Errorf("redirected to %q", u)
	}
	call.Close()
	if _, err := s.Dial(context.Background(), "pbx", "3003", DialOptions{}); !errors.Is(err, ErrRedirectLoop) {
		t.Errorf("redirect off trunk: err = %v", err)
	}
}

func TestRemoteByeEndsCall(t *testing.T) {
	p, dialogs := answeringPeer(t, SendRecv, nil)
	s := startServer(t, []TrunkConfig{p.trunk("pbx")})
	call, err := s.Dial(context.Background(), "pbx", "1001", DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ds := <-dialogs
	waitFor(t, "ACK", func() bool { return ds.LoadState() == sipmsg.DialogStateConfirmed })
	req := sipmsg.NewRequest(sipmsg.BYE, ds.InviteRequest.Contact().Address)
	req.AppendHeader(sipmsg.NewHeader("Reason", `Q.850;cause=16;text="Normal call clearing"`))
	if err := ds.WriteBye(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	e := waitEvent(t, call, EventHangup)
	var he *HangupError
	if !errors.As(e.Cause, &he) || !strings.Contains(he.Reason, "cause=16") {
		t.Fatalf("cause = %v", e.Cause)
	}
	<-call.Done()
	if err := call.Close(); err != nil {
		t.Errorf("close after remote bye: %v", err)
	}
	waitFor(t, "slot released", func() bool { return s.ActiveCalls() == 0 })
}

func TestDialHeadersAndCallerID(t *testing.T) {
	got := make(chan *sipmsg.Request, 1)
	p, _ := answeringPeer(t, SendRecv, func(req *sipmsg.Request, tx sipmsg.ServerTransaction) bool {
		got <- req.Clone()
		finalResponse(486, "Busy Here")(req, tx)
		return false
	})
	tc := p.trunk("carrier")
	tc.FromUser, tc.FromDisplay = "+34910000000", "Segue Support"
	tc.AssertedIdentity, tc.Privacy = "sip:+34910000000@carrier.example", "id"
	tc.Normalize = []NormalizeRule{{Match: "00", Strip: 2, Prepend: "+"}}
	s := startServer(t, []TrunkConfig{tc})
	_, err := s.Dial(context.Background(), "carrier", "tel:0034911234567", DialOptions{
		Headers: map[string]string{"Call-Info": "<https://console.example/c/42>;purpose=info", "X-Segue-Queue": "support"},
	})
	if !errors.Is(err, ErrBusy) {
		t.Fatal(err)
	}
	req := <-got
	checks := map[string]string{
		"request uri": req.Recipient.User,
		"from user":   req.From().Address.User,
		"display":     req.From().DisplayName,
		"pai":         req.GetHeader("P-Asserted-Identity").Value(),
		"privacy":     req.GetHeader("Privacy").Value(),
		"call-info":   req.GetHeader("Call-Info").Value(),
		"x-header":    req.GetHeader("X-Segue-Queue").Value(),
	}
	want := map[string]string{
		"request uri": "+34911234567", "from user": "+34910000000", "display": "Segue Support",
		"pai": "<sip:+34910000000@carrier.example>", "privacy": "id",
		"call-info": "<https://console.example/c/42>;purpose=info", "x-header": "support",
	}
	for k, v := range want {
		if checks[k] != v {
			t.Errorf("%s = %q, want %q", k, checks[k], v)
		}
	}
	if _, err := s.Dial(context.Background(), "carrier", "1001", DialOptions{Headers: map[string]string{"Via": "x"}}); err == nil {
		t.Error("Via accepted as a caller header")
	}
	if _, err := s.Dial(context.Background(), "nope", "1001", DialOptions{}); !errors.Is(err, ErrUnknownTrunk) {
		t.Errorf("unknown trunk: %v", err)
	}
}

func TestPublicAddressInContactAndSDP(t *testing.T) {
	got := make(chan *sipmsg.Request, 1)
	p := newFakePeer(t, map[sipmsg.RequestMethod]sipgo.RequestHandler{
		sipmsg.INVITE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			got <- req.Clone()
			finalResponse(486, "Busy Here")(req, tx)
		},
	})
	s, _ := startServerCfg(t, Config{Listen: []string{"udp:127.0.0.1:0"}, PublicAddress: "203.0.113.7"}, []TrunkConfig{p.trunk("pbx")})
	if _, err := s.Dial(context.Background(), "pbx", "1001", DialOptions{}); !errors.Is(err, ErrBusy) {
		t.Fatal(err)
	}
	req := <-got
	if h := req.Contact().Address.Host; h != "203.0.113.7" {
		t.Errorf("Contact host %q", h)
	}
	md, err := parseSDP(req.Body())
	if err != nil || md.Addr.String() != "203.0.113.7" {
		t.Errorf("SDP address %v (%v)", md, err)
	}
}
