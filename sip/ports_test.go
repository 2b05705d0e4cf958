package sip

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
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

// TestPortPoolPicksAtRandom: ports come from the whole range in no
// guessable order (an attacker who learns one call's port cannot tell the
// next call's), every one even with its RTCP pair, none twice.
func TestPortPoolPicksAtRandom(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		r := rtpRange() // 50 pairs
		p := newPortPool(r[0], r[1], time.Second)
		p.intn = rand.New(rand.NewPCG(seed, seed)).IntN
		ip := netip.MustParseAddr("127.0.0.1")
		seen := map[int]bool{}
		var ports []int
		for i := 0; i < 10; i++ {
			a, b, port, err := p.listen(ip)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { a.Close(); b.Close() })
			if port%2 != 0 || port < r[0] || port+1 > r[1] || seen[port] {
				t.Fatalf("seed %d: port %d (range %v, seen %v)", seed, port, r, seen)
			}
			if got := b.LocalAddr().(*net.UDPAddr).Port; got != port+1 {
				t.Fatalf("seed %d: rtcp on %d, want %d", seed, got, port+1)
			}
			seen[port] = true
			ports = append(ports, port)
		}
		steps := 0
		for i := 1; i < len(ports); i++ {
			if ports[i] == ports[i-1]+2 {
				steps++
			}
		}
		// Ten random picks of 50 rarely follow each other; handed out in
		// order, all nine steps would.
		if steps > 2 {
			t.Errorf("seed %d: ports mostly in order: %v", seed, ports)
		}
	}
}

// TestPortPoolPassesOverTakenPorts: a pair another process holds is
// skipped, and the pool runs out only when every pair is taken.
func TestPortPoolPassesOverTakenPorts(t *testing.T) {
	r := rtpRange()
	ip := netip.MustParseAddr("127.0.0.1")
	other, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: r[0] + 1})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	p := newPortPool(r[0], r[0]+3, time.Second) // two pairs, the first one's RTCP port taken
	for i := 0; i < 3; i++ {
		a, b, port, err := p.listen(ip)
		if err != nil || port != r[0]+2 {
			t.Fatalf("listen: port %d %v, want %d", port, err, r[0]+2)
		}
		a.Close()
		b.Close()
		if _, _, _, err := p.listen(ip); !errors.Is(err, ErrNoPorts) {
			t.Fatalf("with every pair taken: %v", err)
		}
		p.release(port)
		p.now = func() time.Time { return time.Now().Add(time.Duration(i+1) * time.Hour) }
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
