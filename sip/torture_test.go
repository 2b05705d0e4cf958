package sip

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// Torture messages after RFC 4475: well-formed but unusual requests must
// be answered; malformed ones answered 400 (or 505 for a bad version) or
// dropped. Afterwards the server must still carry a call.
func TestTortureMessages(t *testing.T) {
	answered := make(chan *Call, 1)
	srv := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}},
		WithInviteHandler(func(ctx context.Context, in *InboundCall) error {
			if in.User() != "conv-1" {
				return &StatusError{Code: 404, Reason: "Not Found"}
			}
			c, err := in.Answer(ctx, nil)
			if err == nil {
				answered <- c
			}
			return err
		}))
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	me := conn.LocalAddr().String()
	to := net.UDPAddrFromAddrPort(srv.Addr("udp"))
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"
	fill := func(m string, i int) string {
		m = strings.ReplaceAll(m, "ME", me)
		m = strings.ReplaceAll(m, "BR", "z9hG4bKtort"+itoa(i))
		m = strings.ReplaceAll(m, "SRV", srv.Addr("udp").String())
		m = strings.ReplaceAll(m, "\n", "\r\n")
		return strings.ReplaceAll(m, "\r\r\n", "\r\n")
	}
	// send returns the status code of the first response, or 0.
	send := func(i int, m string) int {
		t.Helper()
		if _, err := conn.WriteToUDP([]byte(fill(m, i)), to); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 65535)
		branch := "z9hG4bKtort" + itoa(i) + ";"
		conn.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
		for {
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				return 0
			}
			msg := string(buf[:n])
			if !strings.Contains(msg, branch) && !strings.Contains(msg, "z9hG4bKtort"+itoa(i)+"\r\n") {
				continue // a late answer to an earlier message
			}
			line, _, _ := strings.Cut(msg, "\r\n")
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "SIP/2.0" && f[1] != "100" {
				code := 0
				for _, ch := range f[1] {
					code = code*10 + int(ch-'0')
				}
				return code
			}
		}
	}

	wellFormed := []struct{ name, msg string }{
		{"compact forms and odd spacing", "OPTIONS sip:SRV SIP/2.0\nv: SIP/2.0/UDP ME;branch=BR\nf: \"Caller\"  <sip:pbx@127.0.0.1>;tag=a1\nt:sip:SRV\ni: tort-1@127.0.0.1\nCSeq:   1   OPTIONS\nMax-Forwards: 70\nl: 0\n\n"},
		{"escaped user and parameters", "OPTIONS sip:user;par=u%40example.net@SRV;lr SIP/2.0\nVia: SIP/2.0/UDP ME;branch=BR\nFrom: <sip:%61lice@127.0.0.1>;tag=a2\nTo: <sip:user@SRV>\nCall-ID: tort-2@127.0.0.1\nCSeq: 2 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n"},
		{"unknown method", "NEWMETHOD sip:SRV SIP/2.0\nVia: SIP/2.0/UDP ME;branch=BR\nFrom: <sip:pbx@127.0.0.1>;tag=a3\nTo: <sip:SRV>\nCall-ID: tort-3@127.0.0.1\nCSeq: 3 NEWMETHOD\nMax-Forwards: 70\nContent-Length: 0\n\n"},
		{"unknown headers and long values", "OPTIONS sip:SRV SIP/2.0\nVia: SIP/2.0/UDP ME;branch=BR\nFrom: <sip:pbx@127.0.0.1>;tag=a4\nTo: <sip:SRV>\nCall-ID: tort-4@127.0.0.1\nCSeq: 4 OPTIONS\nMax-Forwards: 70\nX-Unknown: " + strings.Repeat("x", 3000) + "\nNewFangledHeader: newfangled value; param=\"quoted \\\" string\"\nContent-Length: 0\n\n"},
		{"INVITE to an unknown user", "INVITE sip:nobody@SRV SIP/2.0\nVia: SIP/2.0/UDP ME;branch=BR\nFrom: <sip:pbx@127.0.0.1>;tag=a5\nTo: <sip:nobody@SRV>\nCall-ID: tort-5@127.0.0.1\nCSeq: 5 INVITE\nContact: <sip:pbx@ME>\nMax-Forwards: 70\nContent-Type: application/sdp\nContent-Length: " + itoa(len(strings.ReplaceAll(sdp, "\r\n", "\n"))+strings.Count(sdp, "\r\n")) + "\n\n" + sdp},
		{"INVITE with a multipart body", "INVITE sip:conv-2@SRV SIP/2.0\nVia: SIP/2.0/UDP ME;branch=BR\nFrom: <sip:pbx@127.0.0.1>;tag=a6\nTo: <sip:conv-2@SRV>\nCall-ID: tort-6@127.0.0.1\nCSeq: 6 INVITE\nContact: <sip:pbx@ME>\nMax-Forwards: 70\nContent-Type: multipart/mixed;boundary=xyz\nContent-Length: 25\n\n--xyz\r\n\r\nnot sdp\r\n--xyz--"},
		{"BYE for no dialog", "BYE sip:SRV SIP/2.0\nVia: SIP/2.0/UDP ME;branch=BR\nFrom: <sip:pbx@127.0.0.1>;tag=a7\nTo: <sip:SRV>;tag=zz\nCall-ID: tort-7@127.0.0.1\nCSeq: 7 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n"},
	}
	for i, c := range wellFormed {
		if code := send(i, c.msg); code == 0 {
			t.Errorf("%s: no response", c.name)
		} else if code < 200 || code >= 700 {
			t.Errorf("%s: response %d", c.name, code)
		}
	}
	malformed := []struct{ name, msg string }{
		{"content length too large", "OPTIONS sip:SRV SIP/2.0\nVia: SIP/2.0/UDP ME;branch=BR\nFrom: <sip:pbx@127.0.0.1>;tag=b1\nTo: <sip:SRV>\nCall-ID: tort-10@127.0.0.1\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 9999\n\nshort"},
		{"negative content length", "OPTIONS sip:SRV SIP/2.0\nVia: SIP/2.0/UDP ME;branch=BR\nFrom: <sip:pbx@127.0.0.1>;tag=b2\nTo: <sip:SRV>\nCall-ID: tort-11@127.0.0.1\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: -999\n\n"},
		{"CSeq out of range", "OPTIONS sip:SRV SIP/2.0\nVia: SIP/2.0/UDP ME;branch=BR\nFrom: <sip:pbx@127.0.0.1>;tag=b3\nTo: <sip:SRV>\nCall-ID: tort-12@127.0.0.1\nCSeq: 36893488147419103232 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n"},
		{"unbalanced quotes", "OPTIONS sip:SRV SIP/2.0\nVia: SIP/2.0/UDP ME;branch=BR\nFrom: \"Bob <sip:pbx@127.0.0.1>;tag=b4\nTo: <sip:SRV>\nCall-ID: tort-13@127.0.0.1\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n"},
		{"Request-URI in angle brackets", "INVITE <sip:conv-1@SRV> SIP/2.0\nVia: SIP/2.0/UDP ME;branch=BR\nFrom: <sip:pbx@127.0.0.1>;tag=b5\nTo: <sip:conv-1@SRV>\nCall-ID: tort-14@127.0.0.1\nCSeq: 1 INVITE\nContact: <sip:pbx@ME>\nMax-Forwards: 70\nContent-Length: 0\n\n"},
		{"space inside Request-URI", "OPTIONS sip:conv-1@SRV;lr ;x=y SIP/2.0\nVia: SIP/2.0/UDP ME;branch=BR\nFrom: <sip:pbx@127.0.0.1>;tag=b6\nTo: <sip:SRV>\nCall-ID: tort-15@127.0.0.1\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n"},
		{"bad SIP version", "OPTIONS sip:SRV SIP/7.0\nVia: SIP/7.0/UDP ME;branch=BR\nFrom: <sip:pbx@127.0.0.1>;tag=b7\nTo: <sip:SRV>\nCall-ID: tort-16@127.0.0.1\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n"},
		{"no Call-ID", "INVITE sip:conv-1@SRV SIP/2.0\nVia: SIP/2.0/UDP ME;branch=BR\nFrom: <sip:pbx@127.0.0.1>;tag=b8\nTo: <sip:conv-1@SRV>\nCSeq: 1 INVITE\nContact: <sip:pbx@ME>\nMax-Forwards: 70\nContent-Length: 0\n\n"},
		{"no From", "INVITE sip:conv-1@SRV SIP/2.0\nVia: SIP/2.0/UDP ME;branch=BR\nTo: <sip:conv-1@SRV>\nCall-ID: tort-18@127.0.0.1\nCSeq: 1 INVITE\nContact: <sip:pbx@ME>\nMax-Forwards: 70\nContent-Length: 0\n\n"},
		{"binary", "\x00\xff\xfe INVITE \x00\x01 SIP/2.0\n\n"},
	}
	for i, c := range malformed {
		switch code := send(100+i, c.msg); code {
		case 0, 400, 505:
		default:
			t.Errorf("%s: answered %d, want 400 or nothing", c.name, code)
		}
	}
	if srv.ActiveCalls() != 0 {
		t.Errorf("%d calls left by torture messages", srv.ActiveCalls())
	}
	// The server still serves calls.
	a := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:" + srv.Addr("udp").String()}})
	call, err := a.Dial(context.Background(), "pbx", "sip:conv-1@127.0.0.1", DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	(<-answered).Close()
	waitEvent(t, call, EventHangup)
	call.Close()
}
