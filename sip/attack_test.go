package sip

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

// rawSock is a bare UDP socket that speaks SIP as text: an attacker, or
// a second socket of an allowed PBX.
type rawSock struct {
	t    *testing.T
	conn *net.UDPConn
	n    int
}

func newRawSock(t *testing.T, ip string) *rawSock {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawSock{t: t, conn: c}
}

func (r *rawSock) addr() string { return r.conn.LocalAddr().String() }

// dialogIDs are what an attacker on the path learns of a call.
type dialogIDs struct {
	callID, fromTag, toTag string // From is the far end's, To is ours
}

// send writes a request with the given headers and body (lines joined
// with CRLF) to the server.
func (r *rawSock) send(to netip.AddrPort, method, ruri string, d dialogIDs, cseq int, extra []string, body string) {
	r.t.Helper()
	r.n++
	to2 := "<sip:conv-1@127.0.0.1>"
	if d.toTag != "" {
		to2 += ";tag=" + d.toTag
	}
	from := "<sip:pbx@127.0.0.1>"
	if d.fromTag != "" {
		from += ";tag=" + d.fromTag
	}
	lines := []string{
		fmt.Sprintf("%s %s SIP/2.0", method, ruri),
		fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bK-raw-%d-%d;rport", r.addr(), time.Now().UnixNano(), r.n),
		"From: " + from,
		"To: " + to2,
		"Call-ID: " + d.callID,
		fmt.Sprintf("CSeq: %d %s", cseq, method),
		"Contact: <sip:x@" + r.addr() + ">",
		"Max-Forwards: 70",
	}
	lines = append(lines, extra...)
	lines = append(lines, fmt.Sprintf("Content-Length: %d", len(body)), "", body)
	if _, err := r.conn.WriteToUDPAddrPort([]byte(strings.Join(lines, "\r\n")), to); err != nil {
		r.t.Fatal(err)
	}
}

// responses collects what arrives within d.
func (r *rawSock) responses(d time.Duration) []*sipmsg.Response {
	return r.collect(d, 0)
}

// collect reads responses for up to d, or until it has max of them (max
// 0: no limit).
func (r *rawSock) collect(d time.Duration, max int) []*sipmsg.Response {
	var out []*sipmsg.Response
	buf := make([]byte, 65536)
	deadline := time.Now().Add(d)
	for {
		_ = r.conn.SetReadDeadline(deadline)
		n, _, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			return out
		}
		msg, err := sipmsg.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			r.t.Errorf("unparsable datagram: %q", buf[:n])
			continue
		}
		if res, ok := msg.(*sipmsg.Response); ok {
			out = append(out, res)
			if max > 0 && len(out) == max {
				return out
			}
		}
	}
}

// response waits for one response.
func (r *rawSock) response() *sipmsg.Response {
	r.t.Helper()
	got := r.collect(5*time.Second, 1)
	if len(got) == 0 {
		r.t.Fatal("no response")
	}
	return got[0]
}

// inboundCall has the PBX peer p call conv-1 on s and returns the call
// and the PBX's dialog. s must answer with a handler that sends calls on
// the channel.
func inboundCall(t testing.TB, s *Server, p *fakePeer, calls <-chan *Call) (*Call, *sipgo.DialogClientSession) {
	t.Helper()
	dcc := sipgo.NewDialogClientCache(p.cli, sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: "pbx", Host: p.addr.Addr().String(), Port: int(p.addr.Port())}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	target := sipmsg.Uri{Scheme: "sip", User: "conv-1", Host: "127.0.0.1", Port: int(s.Addr("udp").Port())}
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
	select {
	case c := <-calls:
		t.Cleanup(func() { c.Close() })
		return c, dc
	case <-time.After(10 * time.Second):
		t.Fatal("no call")
	}
	return nil, nil
}

func idsOf(dc *sipgo.DialogClientSession) dialogIDs {
	ft, _ := dc.InviteRequest.From().Params.Get("tag")
	tt, _ := dc.InviteResponse.To().Params.Get("tag")
	return dialogIDs{callID: dc.InviteRequest.CallID().Value(), fromTag: ft, toTag: tt}
}

func answerAll(calls chan<- *Call) InviteHandler {
	return func(ctx context.Context, in *InboundCall) error {
		c, err := in.Answer(ctx, nil)
		if err == nil {
			calls <- c
		}
		return err
	}
}

// eventsSoFar drains the events that arrived within d.
func eventsSoFar(c *Call, d time.Duration) []Event {
	var out []Event
	timeout := time.After(d)
	for {
		select {
		case e := <-c.Events():
			out = append(out, e)
		case <-timeout:
			return out
		}
	}
}

// attackRequests are the in-dialog requests an attacker who learnt a
// call's identifiers sends: toll fraud, media theft, DTMF injection and
// hang-up, plus every other method, numbered from cseq on (higher than
// anything the dialog has seen, as an attacker watching it would).
func attackRequests(r *rawSock, to netip.AddrPort, d dialogIDs, ruri string, cseq int) {
	sdp := "v=0\r\no=x 1 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	r.send(to, "REFER", ruri, d, cseq, []string{"Refer-To: <tel:+19005551234>"}, "")
	r.send(to, "INVITE", ruri, d, cseq+1, []string{"Content-Type: application/sdp"}, sdp)
	r.send(to, "INFO", ruri, d, cseq+2, []string{"Content-Type: application/dtmf-relay"}, "Signal=5\r\nDuration=160\r\n")
	r.send(to, "UPDATE", ruri, d, cseq+3, []string{"Content-Type: application/sdp"}, sdp)
	r.send(to, "NOTIFY", ruri, d, cseq+4, []string{"Event: refer"}, "")
	r.send(to, "OPTIONS", ruri, d, cseq+5, nil, "")
	r.send(to, "PRACK", ruri, d, cseq+6, nil, "")
	r.send(to, "CANCEL", ruri, d, cseq+7, nil, "")
	r.send(to, "ACK", ruri, d, cseq+1, nil, "")
	r.send(to, "BYE", ruri, d, cseq+8, nil, "")
}

// TestInDialogAttackFromOutsider: an outsider who knows a call's Call-ID
// and tags sends REFER to a premium number, a re-INVITE moving the audio
// to itself, an INFO with a digit, BYE and the rest. Even with
// scanner_silence off it gets no answer at all, and the call is
// untouched; the PBX's own requests still work afterwards.
func TestInDialogAttackFromOutsider(t *testing.T) {
	calls := make(chan *Call, 1)
	s, _ := startServerCfg(t, Config{Listen: []string{"udp:127.0.0.1:0"}, ScannerSilence: new(false)},
		[]TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}}, WithInviteHandler(answerAll(calls)))
	p := newFakePeer(t, nil)
	c, dc := inboundCall(t, s, p, calls)
	ids := idsOf(dc)

	attacker := newRawSock(t, "127.0.0.2")
	refusedBefore := s.Refused()
	attackRequests(attacker, s.Addr("udp"), ids, "sip:conv-1@"+s.Addr("udp").String(), int(dc.InviteRequest.CSeq().SeqNo)+1000)
	if got := attacker.responses(1500 * time.Millisecond); len(got) != 0 {
		t.Errorf("the outsider got %d responses, first %s", len(got), got[0].StartLine())
	}
	for _, e := range eventsSoFar(c, 200*time.Millisecond) {
		t.Errorf("the outsider's requests caused a %s event", e.Kind)
	}
	select {
	case <-c.Done():
		t.Fatalf("the outsider hung the call up: %v", c.Err())
	default:
	}
	c.mu.Lock()
	remote := c.remote.remote()
	c.mu.Unlock()
	if remote.Addr().String() != "127.0.0.1" {
		t.Errorf("media moved to %v", remote)
	}
	if s.Refused()-refusedBefore < 10 {
		t.Errorf("refused counter went up by %d for 10 requests", s.Refused()-refusedBefore)
	}

	// The PBX's own INFO still counts (its CSeq is 2: the outsider's
	// higher numbers were never recorded).
	sendInfoDigit(t, dc, dc.InviteResponse.Contact().Address, c, '7')
}

// TestInDialogFromAnotherTrunk: a source allowed for one trunk cannot act
// on another trunk's call; it gets 481, as for a dialog that does not
// exist.
func TestInDialogFromAnotherTrunk(t *testing.T) {
	calls := make(chan *Call, 1)
	s := startServer(t, []TrunkConfig{
		{Name: "pbx", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}},
		{Name: "carrier", URI: "sip:192.0.2.9", AllowInboundFrom: []string{"127.0.0.3/32"}},
	}, WithInviteHandler(answerAll(calls)))
	p := newFakePeer(t, nil)
	c, dc := inboundCall(t, s, p, calls)
	ids := idsOf(dc)
	other := newRawSock(t, "127.0.0.3")
	ruri := "sip:conv-1@" + s.Addr("udp").String()
	for i, m := range []string{"INFO", "REFER", "BYE"} {
		var extra []string
		switch m {
		case "INFO":
			extra = []string{"Content-Type: application/dtmf-relay"}
		case "REFER":
			extra = []string{"Refer-To: <sip:2002@127.0.0.1:5999>"}
		}
		body := ""
		if m == "INFO" {
			body = "Signal=5\r\n"
		}
		other.send(s.Addr("udp"), m, ruri, ids, int(dc.InviteRequest.CSeq().SeqNo)+1000+i, extra, body)
		if res := other.response(); res.StatusCode != 481 {
			t.Errorf("%s from the other trunk's source: %d, want 481", m, res.StatusCode)
		}
	}
	for _, e := range eventsSoFar(c, 200*time.Millisecond) {
		t.Errorf("the other trunk's requests caused a %s event", e.Kind)
	}
	select {
	case <-c.Done():
		t.Fatalf("call ended: %v", c.Err())
	default:
	}
	// The same source is a known peer for out-of-dialog requests.
	other.send(s.Addr("udp"), "OPTIONS", ruri, dialogIDs{callID: "ping", fromTag: "x"}, 1, nil, "")
	if res := other.response(); res.StatusCode != 200 {
		t.Errorf("OPTIONS from the carrier: %d", res.StatusCode)
	}
}

// TestInDialogTagsAndCSeq: from the allowed PBX address, a request whose
// tags are not the dialog's gets 481, one whose CSeq is lower than the
// last gets 500 (RFC 3261 §12.2.2), and neither is acted on.
func TestInDialogTagsAndCSeq(t *testing.T) {
	calls := make(chan *Call, 1)
	s := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}}, WithInviteHandler(answerAll(calls)))
	p := newFakePeer(t, nil)
	c, dc := inboundCall(t, s, p, calls)
	ids := idsOf(dc)
	pbx := newRawSock(t, "127.0.0.1")
	to, ruri := s.Addr("udp"), "sip:conv-1@"+s.Addr("udp").String()
	dtmf := []string{"Content-Type: application/dtmf-relay"}
	base := int(dc.InviteRequest.CSeq().SeqNo) // sipgo starts from a random number
	steps := []struct {
		name   string
		method string
		ids    dialogIDs
		cseq   int
		extra  []string
		body   string
		want   int
	}{
		{"wrong From tag", "INFO", dialogIDs{ids.callID, "forged", ids.toTag}, base + 10, dtmf, "Signal=1\r\n", 481},
		{"wrong To tag", "INFO", dialogIDs{ids.callID, ids.fromTag, "forged"}, base + 10, dtmf, "Signal=1\r\n", 481},
		{"no To tag", "BYE", dialogIDs{ids.callID, ids.fromTag, ""}, base + 10, nil, "", 481},
		{"REFER with a wrong To tag", "REFER", dialogIDs{ids.callID, ids.fromTag, "forged"}, base + 10, []string{"Refer-To: <sip:2002@127.0.0.1:5999>"}, "", 481},
		{"in order", "INFO", ids, base + 100, dtmf, "Signal=3\r\n", 200},
		{"lower CSeq", "INFO", ids, base + 50, dtmf, "Signal=4\r\n", 500},
		{"REFER with a lower CSeq", "REFER", ids, base + 60, []string{"Refer-To: <sip:2002@127.0.0.1:5999>"}, "", 500},
	}
	for _, st := range steps {
		pbx.send(to, st.method, ruri, st.ids, st.cseq, st.extra, st.body)
		if res := pbx.response(); res.StatusCode != st.want {
			t.Errorf("%s: %d %s (CSeq %s), want %d", st.name, res.StatusCode, res.Reason, res.CSeq().Value(), st.want)
		}
	}
	var digits []rune
	for _, e := range eventsSoFar(c, 300*time.Millisecond) {
		switch e.Kind {
		case EventDTMF:
			digits = append(digits, e.Digit)
		case EventTransfer, EventHangup:
			t.Errorf("refused requests caused a %s event", e.Kind)
		}
	}
	if string(digits) != "3" {
		t.Errorf("digits %q, want only the in-order INFO's 3", string(digits))
	}
}

// TestOutsiderRefusedStatelessly: with scanner_silence off an outsider's
// INVITE gets exactly one 403, never retransmitted, and its requests
// with a To tag or a CANCEL get nothing; past its budget it gets
// nothing either.
func TestOutsiderRefusedStatelessly(t *testing.T) {
	var handled atomic.Int32
	s, _ := startServerCfg(t, Config{Listen: []string{"udp:127.0.0.1:0"}, ScannerSilence: new(false)},
		[]TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}},
		WithInviteHandler(func(ctx context.Context, in *InboundCall) error { handled.Add(1); return nil }))
	o := newRawSock(t, "127.0.0.2")
	to, ruri := s.Addr("udp"), "sip:conv-1@"+s.Addr("udp").String()
	o.send(to, "INVITE", ruri, dialogIDs{callID: "scan-1", fromTag: "a"}, 1, []string{"Content-Type: application/sdp"}, "v=0\r\n")
	// A stateful 403 would be retransmitted after 0.5 s and 1.5 s.
	got := o.responses(2 * time.Second)
	if len(got) != 1 || got[0].StatusCode != 403 {
		t.Fatalf("outsider INVITE: %d responses %v, want one 403", len(got), got)
	}
	o.send(to, "BYE", ruri, dialogIDs{callID: "scan-1", fromTag: "a", toTag: "b"}, 2, nil, "")
	o.send(to, "INFO", ruri, dialogIDs{callID: "scan-1", fromTag: "a", toTag: "b"}, 3, nil, "")
	o.send(to, "CANCEL", ruri, dialogIDs{callID: "scan-2", fromTag: "a"}, 1, nil, "")
	if got := o.responses(time.Second); len(got) != 0 {
		t.Errorf("in-dialog requests and CANCEL from an outsider got %d responses", len(got))
	}
	for i := range 40 {
		o.send(to, "OPTIONS", ruri, dialogIDs{callID: fmt.Sprintf("sweep-%d", i), fromTag: "a"}, 1, nil, "")
	}
	got = o.responses(time.Second)
	if len(got) == 0 || len(got) > int(outsiderBurst)+2 {
		t.Errorf("40 OPTIONS at once got %d responses, want at most the budget of %v", len(got), outsiderBurst)
	}
	if handled.Load() != 0 {
		t.Errorf("the handler ran %d times", handled.Load())
	}
}

// TestOutboundCallSources: on a call we placed, the trunk's own address
// may send in-dialog requests (no allow_inbound_from needed), an
// outsider may not.
func TestOutboundCallSources(t *testing.T) {
	p, dialogs := answeringPeer(t, SendRecv, nil)
	tc := p.trunk("pbx")
	tc.AllowInboundFrom = nil
	s := startServer(t, []TrunkConfig{tc})
	call, err := s.Dial(context.Background(), "pbx", "1001", DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	ds := <-dialogs
	ft, _ := ds.InviteRequest.To().Params.Get("tag")
	ot, _ := ds.InviteRequest.From().Params.Get("tag")
	ids := dialogIDs{callID: call.ID(), fromTag: ft, toTag: ot}
	attacker := newRawSock(t, "127.0.0.2")
	attackRequests(attacker, s.Addr("udp"), ids, "sip:segue@"+s.Addr("udp").String(), 1000)
	if got := attacker.responses(1500 * time.Millisecond); len(got) != 0 {
		t.Errorf("the outsider got %d responses", len(got))
	}
	for _, e := range eventsSoFar(call, 200*time.Millisecond) {
		t.Errorf("the outsider's requests caused a %s event", e.Kind)
	}
	// The trunk's INFO, with its own CSeq numbering (lower than ours is fine).
	sendInfoDigit(t, ds, ds.InviteRequest.Contact().Address, call, '9')
}

// TestInboundAuthDialogSource: a call that came in with digest
// credentials from an address outside every allow list accepts in-dialog
// requests from that address only.
func TestInboundAuthDialogSource(t *testing.T) {
	calls := make(chan *Call, 1)
	s := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:192.0.2.10", Username: "pbx", Password: "pw", InboundAuth: true}},
		WithInviteHandler(answerAll(calls)))
	p := newFakePeerOn(t, "127.0.0.2")
	dcc := sipgo.NewDialogClientCache(p.cli, sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: "pbx", Host: "127.0.0.2", Port: int(p.addr.Port())}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	target := sipmsg.Uri{Scheme: "sip", User: "conv-1", Host: "127.0.0.1", Port: int(s.Addr("udp").Port())}
	dc, err := dcc.Invite(ctx, target, p.sdp(SendRecv, "PCMU"), sipmsg.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		t.Fatal(err)
	}
	if err := dc.WaitAnswer(ctx, sipgo.AnswerOptions{Username: "pbx", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	if err := dc.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	c := <-calls
	defer c.Close()
	ids := idsOf(dc)
	attacker := newRawSock(t, "127.0.0.3")
	attackRequests(attacker, s.Addr("udp"), ids, "sip:conv-1@"+s.Addr("udp").String(), int(dc.InviteRequest.CSeq().SeqNo)+1000)
	if got := attacker.responses(1500 * time.Millisecond); len(got) != 0 {
		t.Errorf("a third address got %d responses", len(got))
	}
	for _, e := range eventsSoFar(c, 200*time.Millisecond) {
		t.Errorf("the third address caused a %s event", e.Kind)
	}
	sendInfoDigit(t, dc, dc.InviteResponse.Contact().Address, c, '2')
	if err := dc.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the caller's pin released", func() bool { return !s.pinned(netip.MustParseAddr("127.0.0.2")) })
}

// sendInfoDigit sends a DTMF INFO (application/dtmf-relay) inside the far
// end's own dialog to target, and checks that it is answered 200 and
// reaches c as that digit: the legitimate peer still gets through.
func sendInfoDigit(t *testing.T, dlg interface {
	Do(context.Context, *sipmsg.Request) (*sipmsg.Response, error)
}, target sipmsg.Uri, c *Call, digit rune) {
	t.Helper()
	info := sipmsg.NewRequest(sipmsg.INFO, target)
	info.AppendHeader(sipmsg.NewHeader("Content-Type", "application/dtmf-relay"))
	info.SetBody([]byte("Signal=" + string(digit) + "\r\nDuration=160\r\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := dlg.Do(ctx, info)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("the peer's own INFO: %v %v", res, err)
	}
	if e := waitEvent(t, c, EventDTMF); e.Digit != digit {
		t.Errorf("digit %q, want %q", e.Digit, digit)
	}
}
