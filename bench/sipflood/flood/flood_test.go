package flood

import (
	"context"
	"net"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

func TestConfigBounds(t *testing.T) {
	ok := Config{Target: "127.0.0.1:5060", From: "127.0.0.2", Rate: 10, Duration: time.Second}
	for name, c := range map[string]Config{
		"remote target": {Target: "192.0.2.1:5060", From: "127.0.0.2", Rate: 10, Duration: time.Second},
		"remote source": {Target: "127.0.0.1:5060", From: "192.0.2.1", Rate: 10, Duration: time.Second},
		"no port":       {Target: "127.0.0.1", From: "127.0.0.2", Rate: 10, Duration: time.Second},
		"rate 0":        {Target: ok.Target, From: ok.From, Rate: 0, Duration: time.Second},
		"rate too high": {Target: ok.Target, From: ok.From, Rate: MaxRate + 1, Duration: time.Second},
		"no duration":   {Target: ok.Target, From: ok.From, Rate: 10},
		"too long":      {Target: ok.Target, From: ok.From, Rate: 10, Duration: MaxDuration + time.Second},
	} {
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRequestsParse(t *testing.T) {
	b := request(nil, "OPTIONS", "127.0.0.1:5060", "127.0.0.2:40000", 42)
	msg, err := sipmsg.ParseMessage(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	req, ok := msg.(*sipmsg.Request)
	if !ok || req.Method != sipmsg.OPTIONS || req.CallID().Value() != "flood-42@127.0.0.2:40000" || req.Via() == nil || req.CSeq() == nil {
		t.Fatalf("request %v:\n%s", msg, b)
	}
}

// TestRunCountsAnswers floods a socket that echoes every datagram.
func TestRunCountsAnswers(t *testing.T) {
	echo, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = echo.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	res, err := Run(context.Background(), Config{Target: echo.LocalAddr().String(), From: "127.0.0.1", Rate: 1000, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == 0 || res.Received == 0 || res.Received > res.Sent || res.ReceivedBytes == 0 {
		t.Fatalf("%v", res)
	}
}
