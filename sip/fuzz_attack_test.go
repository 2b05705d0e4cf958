package sip

import (
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Fuzz targets for what a far end, or anyone who can reach the gateway's
// ports, controls on the SIP side: datagrams on a call's RTP and RTCP
// ports, requests inside a call's dialog, and digest credentials.

// FuzzRTPDatagram feeds arbitrary datagrams to a strict-source RTP
// session the way its read loop does (SRTP aside), from the far end's SDP
// address or from an outsider, plays out what the jitter buffer holds,
// and hands the same bytes to the RTCP path. Nothing may panic, and
// nothing from the outsider may count as received or move where media
// goes.
func FuzzRTPDatagram(f *testing.F) {
	pcmu, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 7, Timestamp: 1120, SSRC: 42},
		Payload: make([]byte, frameSamples)}).Marshal()
	dtmfEnd, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: defaultDTMFPT, Marker: true, SequenceNumber: 8, Timestamp: 1280, SSRC: 42},
		Payload: []byte{5, 0x80 | 10, 0x03, 0x20}}).Marshal()
	sr, _ := (&rtcp.SenderReport{SSRC: 42, NTPTime: 1 << 40, Reports: []rtcp.ReceptionReport{{SSRC: 1}}}).Marshal()
	f.Add(pcmu, false)
	f.Add(pcmu, true)
	f.Add(dtmfEnd, false)
	f.Add(sr, false)
	f.Add([]byte{0x80, 0x08, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff}, false)
	f.Add([]byte{0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff}, true)

	r := rtpRange()
	s, err := newRTPSession(testLoggerB(), newPortPool(r[0], r[1], 0), netip.MustParseAddr("127.0.0.1"),
		sourcePolicy{symmetric: true, allowed: netip.MustParsePrefix("127.0.0.1/32").Contains}, &foreignCounter{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.close() })
	s.swapOut(discard{})
	var digits atomic.Int32
	s.onDTMF = func(rune) { digits.Add(1) }
	far := netip.MustParseAddrPort("127.0.0.1:40000")
	outsider := netip.MustParseAddrPort("127.0.0.2:40000")
	s.configure(staticCodecs["PCMU"], far, netip.MustParseAddrPort("127.0.0.1:40001"), defaultDTMFPT, SendRecv)
	dec := make([]byte, 0, 1500)
	var pkt rtp.Packet
	now := time.Unix(1700000000, 0)

	f.Fuzz(func(t *testing.T, data []byte, fromOutsider bool) {
		from := far
		if fromOutsider {
			from = outsider
		}
		before, beforeDigits := s.stats(), digits.Load()
		now = now.Add(frameDuration)
		s.receiveDatagram(data, dec, &pkt, from, now)
		s.playoutTick()
		s.receiveRTCP(data, from, now)
		after := s.stats()
		if fromOutsider {
			if after.PacketsReceived != before.PacketsReceived || after.BytesReceived != before.BytesReceived ||
				after.RTCPReceived != before.RTCPReceived || digits.Load() != beforeDigits {
				t.Fatalf("an outsider's datagram was taken: before %+v, after %+v", before, after)
			}
		}
		if dst := sendsTo(s); dst != far {
			t.Fatalf("media goes to %v, want the SDP address %v", dst, far)
		}
	})
}

// inDialogMethods are the methods FuzzInDialog sends inside the call. BYE
// is left out so that the call stays up for the inputs that follow.
var inDialogMethods = []string{"INFO", "REFER", "NOTIFY", "UPDATE", "INVITE", "OPTIONS", "ACK", "PRACK", "MESSAGE", "SUBSCRIBE"}

// dialogHeaders are the headers (and their compact forms) that say which
// dialog a request is in, or frame it; FuzzInDialog sets them itself.
var dialogHeaders = map[string]bool{"from": true, "f": true, "to": true, "t": true, "call-id": true, "i": true,
	"cseq": true, "via": true, "v": true, "content-length": true, "l": true}

// FuzzInDialog sends requests inside an answered call, with the call's
// Call-ID and tags (or forged tags), arbitrary extra header lines and an
// arbitrary body, straight to the server's request router with no panic
// guard. The trunk allows no transfer target, so no input may start a
// transfer or end the call; a request with forged tags must get 481 and
// change nothing.
func FuzzInDialog(f *testing.F) {
	f.Add(uint8(0), false, "Content-Type: application/dtmf-relay", []byte("Signal=5\r\nDuration=160\r\n"))
	f.Add(uint8(0), true, "Content-Type: application/dtmf", []byte("7"))
	f.Add(uint8(1), false, "Refer-To: <sip:2002@127.0.0.1:5999?Replaces=abc%40x%3Bto-tag%3D1%3Bfrom-tag%3D2>", []byte(nil))
	f.Add(uint8(1), false, "Refer-To: tel:+19005551234\nReferred-By: <sip:x@y>", []byte(nil))
	f.Add(uint8(2), false, "Event: refer\nContent-Type: message/sipfrag", []byte("SIP/2.0 200 OK\r\n"))
	f.Add(uint8(4), false, "Content-Type: application/sdp\nSession-Expires: 90;refresher=uas",
		[]byte("v=0\r\no=- 2 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n"))
	f.Add(uint8(3), false, "Content-Type: application/sdp", []byte("v=0\r\nm=audio 0 RTP/AVP 0\r\n"))
	f.Add(uint8(6), false, "Content-Type: application/sdp", []byte("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4002 RTP/AVP 8\r\n"))

	calls := make(chan *Call, 1)
	s := startServer(f, []TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"},
		TransferTargets: []string{"sip:nobody@192.0.2.1"}}}, WithInviteHandler(answerAll(calls)))
	p := newFakePeer(f, nil)
	c, dc := inboundCall(f, s, p, calls)
	ids := idsOf(dc)
	ruri := "sip:conv-1@" + s.Addr("udp").String()
	var cseq atomic.Uint32
	cseq.Store(dc.InviteRequest.CSeq().SeqNo)

	f.Fuzz(func(t *testing.T, m uint8, forge bool, headers string, body []byte) {
		method := inDialogMethods[int(m)%len(inDialogMethods)]
		fromTag, toTag := ids.fromTag, ids.toTag
		if forge {
			fromTag, toTag = "forged-"+fromTag, "forged"
		}
		n := cseq.Add(1)
		lines := []string{
			fmt.Sprintf("%s %s SIP/2.0", method, ruri),
			fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bK-fuzz-%d;rport", p.addr, n),
			"From: <sip:pbx@127.0.0.1>;tag=" + fromTag,
			"To: <sip:conv-1@127.0.0.1>;tag=" + toTag,
			"Call-ID: " + ids.callID,
			fmt.Sprintf("CSeq: %d %s", n, method),
			"Contact: <sip:pbx@" + p.addr.String() + ">",
			"Max-Forwards: 70",
		}
		for _, l := range strings.Split(headers, "\n") {
			l = strings.Trim(l, "\r")
			name, _, _ := strings.Cut(l, ":")
			if strings.TrimSpace(l) != "" && !dialogHeaders[strings.ToLower(strings.TrimSpace(name))] {
				lines = append(lines, l)
			}
		}
		lines = append(lines, fmt.Sprintf("Content-Length: %d", len(body)), "", string(body))
		msg, err := sipmsg.ParseMessage([]byte(strings.Join(lines, "\r\n")))
		if err != nil {
			return
		}
		req, ok := msg.(*sipmsg.Request)
		if !ok || req.CallID() == nil || req.CSeq() == nil || req.From() == nil || req.To() == nil || req.Via() == nil {
			return
		}
		req.SetTransport("UDP")
		req.SetSource(p.addr.String())
		tx := siptest.NewServerTxRecorder(req)
		s.route(req, tx)
		for _, e := range drainEvents(c) {
			if e.Kind == EventTransfer || e.Kind == EventHangup || forge {
				t.Fatalf("%s (forged tags: %v) caused a %s event", method, forge, e.Kind)
			}
		}
		if forge && method != "ACK" {
			res := tx.Result()
			if len(res) != 1 || res[0].StatusCode != 481 {
				t.Fatalf("%s with forged tags answered %v, want one 481", method, statusCodes(res))
			}
		}
		if c.Err() != nil {
			t.Fatalf("the call ended after %s: %v", method, c.Err())
		}
	})
}

// drainEvents returns the call's events that are waiting, without
// blocking.
func drainEvents(c *Call) []Event {
	var out []Event
	for {
		select {
		case e := <-c.Events():
			out = append(out, e)
		default:
			return out
		}
	}
}

func statusCodes(res []*sipmsg.Response) []int {
	out := make([]int, len(res))
	for i, r := range res {
		out[i] = r.StatusCode
	}
	return out
}

// FuzzDigestAuthorization hands arbitrary Authorization values on an
// INVITE from an outsider to the inbound digest check and the challenge
// that follows a failure. Nothing may panic; garbage never authenticates;
// a value that did authenticate never does so twice (no replay).
func FuzzDigestAuthorization(f *testing.F) {
	f.Add(`Digest username="pbx-in", realm="segue", nonce="x.y", uri="sip:conv-1@127.0.0.1", response="00", qop=auth, nc=00000001, cnonce="c"`)
	f.Add(`Digest username="pbx-in", realm="segue", nonce="", uri="", response="", algorithm=SHA-256`)
	f.Add(`Basic cGJ4OnB3`)
	f.Add(`Digest ,,,=,"`)
	cfg := Config{Listen: []string{"udp:127.0.0.1:0"}, RTPPortRange: rtpRange()}
	cfg.ApplyDefaults()
	tc := TrunkConfig{Name: "pbx", URI: "sip:127.0.0.1:5999", InboundAuth: true, Username: "out", Password: "out-secret",
		InboundUsername: "pbx-in", InboundPassword: "in-secret-password"}
	tc.ApplyDefaults()
	s, err := New(cfg, []TrunkConfig{tc})
	if err != nil {
		f.Fatal(err)
	}
	ruri := sipmsg.Uri{Scheme: "sip", User: "conv-1", Host: "127.0.0.1"}
	var src atomic.Uint32
	f.Fuzz(func(t *testing.T, value string) {
		// A fresh outsider address each time, so that the failure limit
		// does not silence the whole run after five inputs.
		n := src.Add(1)
		newReq := func() *sipmsg.Request {
			src := fmt.Sprintf("10.%d.%d.%d", n>>16&0xff, n>>8&0xff, n&0xff)
			req := sipmsg.NewRequest(sipmsg.INVITE, ruri)
			via := &sipmsg.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: src, Port: 5060, Params: sipmsg.NewParams()}
			via.Params.Add("branch", fmt.Sprintf("z9hG4bK-fuzz-%d", n))
			req.AppendHeader(via)
			from := &sipmsg.FromHeader{Address: sipmsg.Uri{Scheme: "sip", User: "pbx", Host: src}, Params: sipmsg.NewParams()}
			from.Params.Add("tag", "f")
			req.AppendHeader(from)
			req.AppendHeader(&sipmsg.ToHeader{Address: ruri})
			cid := sipmsg.CallIDHeader(fmt.Sprintf("fuzz-%d", n))
			req.AppendHeader(&cid)
			req.AppendHeader(&sipmsg.CSeqHeader{SeqNo: 1, MethodName: sipmsg.INVITE})
			req.AppendHeader(sipmsg.NewHeader("Authorization", value))
			req.SetSource(src + ":5060")
			return req
		}
		first := s.authTrunk(newReq())
		if first != nil && !strings.Contains(value, "in-secret") && !validNonce(s, value) {
			t.Fatalf("%q authenticated", value)
		}
		if first != nil && s.authTrunk(newReq()) != nil {
			t.Fatalf("%q authenticated twice", value)
		}
		req := newReq()
		s.challenge(req, siptest.NewServerTxRecorder(req))
	})
}

// validNonce reports whether the credentials carry a nonce the server
// issued, without which no response can be right.
func validNonce(s *Server, value string) bool {
	for _, part := range strings.Split(value, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && strings.EqualFold(strings.TrimPrefix(k, "Digest "), "nonce") {
			_, ours := s.auth.key.issued(strings.Trim(v, `"`))
			return ours
		}
	}
	return false
}
