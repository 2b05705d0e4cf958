package sip

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

func TestPortPoolRestsReleasedPorts(t *testing.T) {
	r := rtpRange()
	p := newPortPool(r[0], r[0]+3, 3*time.Second) // two RTP/RTCP pairs
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	ip := netip.MustParseAddr("127.0.0.1")
	a1, b1, port1, err := p.listen(ip)
	if err != nil {
		t.Fatal(err)
	}
	a2, b2, port2, err := p.listen(ip)
	if err != nil {
		t.Fatal(err)
	}
	if port1%2 != 0 || port2%2 != 0 || port1 == port2 {
		t.Fatalf("ports %d %d", port1, port2)
	}
	if _, _, _, err := p.listen(ip); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("third pair: %v", err)
	}
	a1.Close()
	b1.Close()
	p.release(port1)
	if _, _, _, err := p.listen(ip); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("resting port handed out: %v", err)
	}
	now = now.Add(4 * time.Second)
	a3, b3, port3, err := p.listen(ip)
	if err != nil || port3 != port1 {
		t.Fatalf("after rest: %d %v", port3, err)
	}
	for _, c := range []interface{ Close() error }{a2, b2, a3, b3} {
		c.Close()
	}
}

func TestRTCPReportsAndSIPInfoDTMF(t *testing.T) {
	calls := make(chan *Call, 1)
	b := startServer(t, []TrunkConfig{{Name: "gw", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}},
		WithRTCPInterval(200*time.Millisecond),
		WithInviteHandler(func(ctx context.Context, in *InboundCall) error {
			c, err := in.Answer(ctx, nil)
			if err == nil {
				calls <- c
			}
			return err
		}))
	a := startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:" + b.Addr("udp").String()}}, WithRTCPInterval(200*time.Millisecond))
	call, err := a.Dial(context.Background(), "pbx", "sip:conv-1@127.0.0.1", DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	bc := <-calls
	waitFor(t, "sender reports both ways", func() bool {
		return call.Stats().RTCPReceived >= 2 && bc.Stats().RTCPReceived >= 2
	})
	// A phone that sends DTMF as SIP INFO (application/dtmf-relay).
	req := sipmsg.NewRequest(sipmsg.INFO, bc.remoteTarget())
	req.AppendHeader(sipmsg.NewHeader("Content-Type", "application/dtmf-relay"))
	req.SetBody([]byte("Signal=7\r\nDuration=160\r\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := bc.dialog().Do(ctx, req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("INFO: %v %v", res, err)
	}
	if d := waitEvent(t, call, EventDTMF).Digit; d != '7' {
		t.Errorf("digit %q", d)
	}
}
