package sip

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	"github.com/zaf/g711"
)

// reoffer sends a re-INVITE (or UPDATE) with body from the PBX side of
// the dialog and returns our answer, after ACKing an INVITE.
func reoffer(t *testing.T, ds *sipgo.DialogServerSession, method sipmsg.RequestMethod, body []byte) *mediaDesc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := sipmsg.NewRequest(method, ds.InviteRequest.Contact().Address)
	if body != nil {
		req.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
		req.SetBody(body)
	}
	res, err := ds.Do(ctx, req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("%s: %v %v", method, res, err)
	}
	if method == sipmsg.INVITE {
		ack := sipmsg.NewRequest(sipmsg.ACK, ds.InviteRequest.Contact().Address)
		if err := ds.WriteRequest(ack); err != nil {
			t.Fatal(err)
		}
	}
	md, err := parseSDP(res.Body())
	if err != nil {
		t.Fatalf("answer: %v", err)
	}
	return md
}

// readRTP reads n packets from conn and returns them.
func readRTP(t *testing.T, conn *net.UDPConn, n int) []rtp.Packet {
	t.Helper()
	var out []rtp.Packet
	buf := make([]byte, 1500)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	for len(out) < n {
		k, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("read rtp: %v", err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(append([]byte(nil), buf[:k]...)); err != nil {
			continue
		}
		if p.PayloadType > 95 {
			continue
		}
		out = append(out, p)
	}
	return out
}

func TestReinviteHoldResumeAndMove(t *testing.T) {
	p, dialogs := answeringPeer(t, SendRecv, nil)
	s := startServer(t, []TrunkConfig{p.trunk("pbx")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	call, err := s.Dial(ctx, "pbx", "1001", DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	ds := <-dialogs
	go playTone(ctx, call.AudioIn(), 1000)
	before := readRTP(t, p.rtp, 5)

	// Hold: sendonly must be answered recvonly, never a cached sendrecv.
	if md := reoffer(t, ds, sipmsg.INVITE, p.sdp(SendOnly, "PCMU")); md.Direction != RecvOnly {
		t.Errorf("hold answered %s, want recvonly", md.Direction)
	}
	waitEvent(t, call, EventHold)
	if !call.OnHold() {
		t.Error("OnHold false after hold")
	}
	if md := reoffer(t, ds, sipmsg.INVITE, p.sdp(Inactive, "PCMU")); md.Direction != Inactive {
		t.Errorf("inactive answered %s", md.Direction)
	}
	if md := reoffer(t, ds, sipmsg.INVITE, p.sdp(SendRecv, "PCMU")); md.Direction != SendRecv {
		t.Errorf("resume answered %s", md.Direction)
	}
	waitEvent(t, call, EventResume)
	if call.OnHold() {
		t.Error("OnHold true after resume")
	}

	// Move media to a new socket and switch to PCMA, by UPDATE (RFC 3311).
	moved, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close()
	offer := buildSDP(sdpParams{Addr: netip.MustParseAddr("127.0.0.1"), Port: moved.LocalAddr().(*net.UDPAddr).Port, Codecs: codecList([]string{"PCMA"}), DTMFPT: 96, Direction: SendRecv, SessionID: 7, Version: 9})
	md := reoffer(t, ds, sipmsg.UPDATE, offer)
	if c, _ := md.negotiate([]string{"PCMA"}); c.Name != "PCMA" || md.dtmfPT() != 96 {
		t.Errorf("update answer codec %v dtmf %d", c, md.dtmfPT())
	}
	if e := waitEvent(t, call, EventMediaChanged); e.Codec != "PCMA" {
		t.Errorf("media changed to %q", e.Codec)
	}
	after := readRTP(t, moved, 60)
	last := before[len(before)-1]
	first := after[0]
	if first.SSRC != last.SSRC || first.SequenceNumber-last.SequenceNumber > 500 || first.SequenceNumber == last.SequenceNumber {
		t.Errorf("no continuity: ssrc %x->%x seq %d->%d", last.SSRC, first.SSRC, last.SequenceNumber, first.SequenceNumber)
	}
	var pcm []int16
	for _, pk := range after[10:] {
		if pk.PayloadType != 8 {
			t.Fatalf("payload type %d after switching to PCMA", pk.PayloadType)
		}
		for _, b := range pk.Payload {
			pcm = append(pcm, g711.DecodeAlawFrame(b))
		}
	}
	if f := peakFreq(pcm); f < 990 || f > 1010 {
		t.Errorf("after move: peak %v Hz, want 1000", f)
	}
	// DTMF now uses the renumbered telephone-event type.
	go func() { _ = call.SendDTMF(ctx, "5") }()
	buf := make([]byte, 1500)
	moved.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, _, err := moved.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal("no telephone-event with pt 96")
		}
		var pk rtp.Packet
		if pk.Unmarshal(buf[:n]) == nil && pk.PayloadType == 96 {
			break
		}
	}

	// Late offer: an empty re-INVITE gets our full offer; the answer comes in the ACK.
	req := sipmsg.NewRequest(sipmsg.INVITE, ds.InviteRequest.Contact().Address)
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	res, err := ds.Do(rctx, req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("late offer: %v %v", res, err)
	}
	ourOffer, err := parseSDP(res.Body())
	if err != nil || len(ourOffer.Formats) < 2 {
		t.Fatalf("late offer answer %v %v", ourOffer, err)
	}
	ack := sipmsg.NewRequest(sipmsg.ACK, ds.InviteRequest.Contact().Address)
	ack.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	ack.SetBody(p.sdp(SendRecv, "PCMU"))
	if err := ds.WriteRequest(ack); err != nil {
		t.Fatal(err)
	}
	back := readRTP(t, p.rtp, 5)
	if back[len(back)-1].PayloadType != 0 {
		t.Errorf("after late offer pt %d, want PCMU", back[len(back)-1].PayloadType)
	}
}

func TestStrictSourceAndRelatch(t *testing.T) {
	heard := newRecorder()
	p, dialogs := answeringPeer(t, SendRecv, nil)
	s := startServer(t, []TrunkConfig{p.trunk("pbx")})
	call, err := s.Dial(context.Background(), "pbx", "1001", DialOptions{AudioOut: heard})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	<-dialogs
	ours := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(call.LocalRTPPort()))
	stop := make(chan struct{})
	defer close(stop)
	go sendToneRTP(p, ours, 600, stop)
	waitFor(t, "audio", func() bool { return len(heard.Samples()) >= 1600 })
	// Another source (RTP bleed) is dropped and counted, not heard.
	intruder := newIdlePeer(t)
	stop2 := make(chan struct{})
	go sendToneRTP(intruder, ours, 2000, stop2)
	waitFor(t, "foreign packets counted", func() bool { return call.Stats().PacketsForeign >= 20 })
	close(stop2)
	n := len(heard.Samples())
	waitFor(t, "more audio", func() bool { return len(heard.Samples()) >= n+4000 })
	s2 := heard.Samples()[n:]
	if p := purity(s2, 2000); p > -30 {
		t.Errorf("intruder tone leaked into the call (%.1f dB)", p)
	}
	if f := peakFreq(s2); f < 590 || f > 610 {
		t.Errorf("peak %v Hz, want 600", f)
	}
	// The RTP SR/RR loop runs with stats readable meanwhile.
	if st := call.Stats(); st.PacketsReceived == 0 || st.JitterMs < 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestSessionTimers(t *testing.T) {
	t.Run("we refresh", func(t *testing.T) {
		var updates atomic.Int32
		p, dialogs := answeringPeerWith(t, SendRecv, nil, map[sipmsg.RequestMethod]sipgo.RequestHandler{
			sipmsg.UPDATE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
				if h := req.GetHeader("Session-Expires"); h != nil && strings.HasPrefix(h.Value(), "2") {
					updates.Add(1)
				}
				finalResponse(200, "OK")(req, tx)
			},
		}, sipmsg.NewHeader("Session-Expires", "2;refresher=uac"), sipmsg.NewHeader("Require", "timer"))
		s := startServer(t, []TrunkConfig{p.trunk("pbx")})
		call, err := s.Dial(context.Background(), "pbx", "1001", DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		<-dialogs
		waitFor(t, "a session refresh", func() bool { return updates.Load() >= 1 })
		select {
		case <-call.Done():
			t.Fatal("call ended")
		default:
		}
		call.Close()
	})
	t.Run("far end never refreshes", func(t *testing.T) {
		p, dialogs := answeringPeerWith(t, SendRecv, nil, nil, sipmsg.NewHeader("Session-Expires", "2;refresher=uas"))
		s := startServer(t, []TrunkConfig{p.trunk("pbx")})
		call, err := s.Dial(context.Background(), "pbx", "1001", DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ds := <-dialogs
		e := waitEvent(t, call, EventHangup)
		if !errors.Is(e.Cause, ErrSessionExpired) {
			t.Errorf("cause %v", e.Cause)
		}
		waitFor(t, "BYE at the PBX", func() bool { return ds.LoadState() == sipmsg.DialogStateEnded })
		call.Close()
	})
}

func TestReferBlindTransfer(t *testing.T) {
	var mu sync.Mutex
	var frags []string
	var port atomic.Int32
	p, dialogs := answeringPeerWith(t, SendRecv, nil, map[sipmsg.RequestMethod]sipgo.RequestHandler{
		sipmsg.NOTIFY: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			mu.Lock()
			frags = append(frags, strings.TrimSpace(string(req.Body())))
			mu.Unlock()
			finalResponse(200, "OK")(req, tx)
		},
	})
	port.Store(int32(p.addr.Port()))
	s := startServer(t, []TrunkConfig{p.trunk("pbx")})
	opts := DialOptions{DisplayName: "Ann Lee", Headers: map[string]string{
		"User-to-User":         "0123abcd;encoding=hex",
		"Call-Info":            "<http://console.example/c/c_1>;purpose=info",
		"X-Segue-Conversation": "c_1",
	}}
	call, err := s.Dial(context.Background(), "pbx", "1001", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	first := <-dialogs
	firstID := call.ID()
	refer := func(to string) *sipmsg.Response {
		req := sipmsg.NewRequest(sipmsg.REFER, first.InviteRequest.Contact().Address)
		req.AppendHeader(sipmsg.NewHeader("Refer-To", to))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := first.Do(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := refer("<sip:900@198.51.100.7>"); res.StatusCode != 403 {
		t.Errorf("off-trunk REFER: %d, want 403", res.StatusCode)
	}
	if res := refer("<sip:2002@127.0.0.1:" + itoa(int(port.Load())) + ">"); res.StatusCode != 202 {
		t.Fatalf("REFER: %d", res.StatusCode)
	}
	if e := waitEvent(t, call, EventTransfer); !strings.Contains(e.Target, "2002") {
		t.Errorf("transfer target %q", e.Target)
	}
	second := <-dialogs
	if second.InviteRequest.Recipient.User != "2002" {
		t.Errorf("new INVITE to %q", second.InviteRequest.Recipient.User)
	}
	// The transfer's INVITE carries the first one's context and caller ID.
	for _, inv := range []*sipmsg.Request{first.InviteRequest, second.InviteRequest} {
		if got := inv.From().DisplayName; got != "Ann Lee" {
			t.Errorf("INVITE to %s: From display name %q, want Ann Lee", inv.Recipient.User, got)
		}
		for k, v := range opts.Headers {
			if h := inv.GetHeader(k); h == nil || h.Value() != v {
				t.Errorf("INVITE to %s: %s is %v, want %q", inv.Recipient.User, k, h, v)
			}
		}
	}
	if e := waitEvent(t, call, EventTransferred); !strings.Contains(e.Target, "2002") {
		t.Errorf("transferred to %q", e.Target)
	}
	waitFor(t, "final NOTIFY", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(frags) >= 2 && frags[len(frags)-1] == "SIP/2.0 200 OK"
	})
	if frags[0] != "SIP/2.0 100 Trying" {
		t.Errorf("first sipfrag %q", frags[0])
	}
	// The transferor hangs up its leg; the call carries on with the new one.
	if err := first.Bye(context.Background()); err != nil {
		t.Fatal(err)
	}
	if call.ID() == firstID {
		t.Error("call id unchanged after transfer")
	}
	select {
	case <-call.Done():
		t.Fatalf("call ended with the transferor's BYE: %v", call.Err())
	case <-time.After(200 * time.Millisecond):
	}
	if err := call.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "BYE on the new leg", func() bool { return second.LoadState() == sipmsg.DialogStateEnded })
}

// TestReferOfAnInboundCall: a call the PBX placed into the gateway and
// then transfers (REFER) goes on with an INVITE that carries the context
// given with SetTransferContext, since the PBX's own INVITE carried none
// of the gateway's. A transfer the new party refuses is reported with its
// status (EventTransferFailed) and the call stays; an answered one is
// reported once answered (EventTransferred).
func TestReferOfAnInboundCall(t *testing.T) {
	opts := DialOptions{DisplayName: "Ann Lee", Headers: map[string]string{
		"User-to-User":         "0123abcd;encoding=hex",
		"Call-Info":            "<http://console.example/c/c_1>;purpose=info",
		"X-Segue-Conversation": "c_1",
	}}
	p := newIdlePeer(t)
	contact := sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: "pbx", Host: "127.0.0.1", Port: int(p.addr.Port())}}
	dcc := sipgo.NewDialogClientCache(p.cli, contact)
	dsc := sipgo.NewDialogServerCache(p.cli, contact)
	invites := make(chan *sipmsg.Request, 4)
	var mu sync.Mutex
	var frags []string
	p.serve(map[sipmsg.RequestMethod]sipgo.RequestHandler{
		sipmsg.INVITE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			invites <- req
			if req.Recipient.User == "2002" {
				finalResponse(486, "Busy Here")(req, tx)
				return
			}
			ds, err := dsc.ReadInvite(req, tx)
			if err != nil {
				t.Error(err)
				return
			}
			if err := ds.Respond(200, "OK", p.sdp(SendRecv, "PCMU"), sipmsg.NewHeader("Content-Type", "application/sdp")); err != nil {
				t.Error(err)
				return
			}
			<-ds.Context().Done()
		},
		sipmsg.ACK: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) { _ = dsc.ReadAck(req, tx) },
		sipmsg.BYE: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			if dcc.ReadBye(req, tx) != nil {
				_ = dsc.ReadBye(req, tx)
			}
		},
		sipmsg.NOTIFY: func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			mu.Lock()
			frags = append(frags, strings.TrimSpace(string(req.Body())))
			mu.Unlock()
			finalResponse(200, "OK")(req, tx)
		},
	})
	calls := make(chan *Call, 1)
	s := startServer(t, []TrunkConfig{p.trunk("pbx")}, WithInviteHandler(func(ctx context.Context, in *InboundCall) error {
		in.SetTransferContext(opts)
		c, err := in.Answer(ctx, nil)
		if err != nil {
			return err
		}
		calls <- c
		return nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	target := sipmsg.Uri{Scheme: "sip", User: "conv-c_1", Host: "127.0.0.1", Port: int(s.Addr("udp").Port())}
	dc, err := dcc.Invite(ctx, target, p.sdp(SendRecv, "PCMU"), sipmsg.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		t.Fatal(err)
	}
	if err := dc.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := dc.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	call := <-calls
	defer call.Close()
	refer := func(user string) {
		t.Helper()
		req := sipmsg.NewRequest(sipmsg.REFER, dc.InviteResponse.Contact().Address)
		req.AppendHeader(sipmsg.NewHeader("Refer-To", "<sip:"+user+"@"+p.addr.String()+">"))
		res, err := dc.Do(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 202 {
			t.Fatalf("REFER to %s: %d", user, res.StatusCode)
		}
		if e := waitEvent(t, call, EventTransfer); !strings.Contains(e.Target, user) {
			t.Errorf("transfer target %q", e.Target)
		}
		inv := <-invites
		if inv.Recipient.User != user {
			t.Errorf("transfer INVITE to %q, want %s", inv.Recipient.User, user)
		}
		if got := inv.From().DisplayName; got != "Ann Lee" {
			t.Errorf("transfer INVITE to %s: From display name %q, want Ann Lee", user, got)
		}
		for k, v := range opts.Headers {
			if h := inv.GetHeader(k); h == nil || h.Value() != v {
				t.Errorf("transfer INVITE to %s: %s is %v, want %q", user, k, h, v)
			}
		}
	}

	// The first target is busy: the call stays with the transferor.
	refer("2002")
	e := waitEvent(t, call, EventTransferFailed)
	var se *StatusError
	if !errors.As(e.Cause, &se) || se.Code != 486 || !strings.Contains(e.Target, "2002") {
		t.Errorf("failed transfer: target %q cause %v", e.Target, e.Cause)
	}
	waitFor(t, "the failure's NOTIFY", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(frags) > 0 && frags[len(frags)-1] == "SIP/2.0 486 Busy Here"
	})
	select {
	case <-call.Done():
		t.Fatalf("call ended with the failed transfer: %v", call.Err())
	default:
	}

	// The second answers.
	refer("2003")
	if e := waitEvent(t, call, EventTransferred); !strings.Contains(e.Target, "2003") {
		t.Errorf("transferred to %q", e.Target)
	}
	if err := dc.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	if err := call.Close(); err != nil {
		t.Fatal(err)
	}
}
