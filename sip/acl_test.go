package sip

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

func TestSourceLimiter(t *testing.T) {
	l := newSourceLimiter(2, 3, 4)
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if !l.allow(a, t0) {
			t.Fatalf("request %d within the burst refused", i+1)
		}
	}
	if l.allow(a, t0) {
		t.Fatal("fourth request at once allowed past a burst of 3")
	}
	if !l.allow(b, t0) {
		t.Fatal("another source shares the first one's budget")
	}
	// Half a second refills one token at 2/s, and no more.
	if !l.allow(a, t0.Add(500*time.Millisecond)) {
		t.Fatal("no token after half a second at 2/s")
	}
	if l.allow(a, t0.Add(500*time.Millisecond)) {
		t.Fatal("two tokens after half a second at 2/s")
	}
	// A long pause refills to the burst, not beyond.
	later := t0.Add(time.Hour)
	for i := range 3 {
		if !l.allow(a, later) {
			t.Fatalf("after a pause, request %d refused", i+1)
		}
	}
	if l.allow(a, later) {
		t.Fatal("the bucket grew past its burst")
	}
	// The number of sources tracked stays bounded.
	for i := range 100 {
		l.allow(netip.AddrFrom4([4]byte{10, 0, byte(i / 256), byte(i)}), t0)
	}
	if n := l.size(); n > 4 {
		t.Fatalf("limiter tracks %d sources, bound is 4", n)
	}
}

// filterServer builds a Server (not running) whose read filter can be
// called directly.
func filterServer(t *testing.T, cfg Config, trunks ...TrunkConfig) *Server {
	t.Helper()
	cfg.Listen = []string{"udp:127.0.0.1:0"}
	cfg.RTPPortRange = rtpRange()
	cfg.ApplyDefaults()
	for i := range trunks {
		trunks[i].ApplyDefaults()
	}
	s, err := New(cfg, trunks, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	s.resolveTrunkHosts(context.Background())
	return s
}

func udpFrom(ip string) sipmsg.TransportReadProps {
	return sipmsg.TransportReadProps{Transport: "UDP", RemoteAddr: &net.UDPAddr{IP: net.ParseIP(ip), Port: 5060}}
}

func tcpFrom(ip string) sipmsg.TransportReadProps {
	return sipmsg.TransportReadProps{Transport: "TCP", RemoteAddr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 5060}}
}

func TestReadFilter(t *testing.T) {
	options := []byte("OPTIONS sip:x@192.0.2.20 SIP/2.0\r\n\r\n")
	cancel := []byte("CANCEL sip:x@192.0.2.20 SIP/2.0\r\n\r\n")
	response := []byte("SIP/2.0 200 OK\r\n\r\n")
	ack := []byte("ACK sip:x@192.0.2.20 SIP/2.0\r\n\r\n")
	pbx := TrunkConfig{Name: "pbx", URI: "sip:192.0.2.10:5060", AllowInboundFrom: []string{"198.51.100.0/24"}}
	type check struct {
		props   sipmsg.TransportReadProps
		data    []byte
		pass    bool
		wantErr bool
	}
	for _, tc := range []struct {
		name   string
		cfg    Config
		trunks []TrunkConfig
		checks []check
	}{
		{"silence on by default", Config{}, []TrunkConfig{pbx}, []check{
			{udpFrom("198.51.100.7"), options, true, false},  // allow_inbound_from
			{udpFrom("192.0.2.10"), response, true, false},   // the trunk's host
			{udpFrom("203.0.113.5"), options, false, false},  // an outsider: dropped unparsed
			{udpFrom("203.0.113.5"), response, false, false}, // forged responses too
			{tcpFrom("203.0.113.5"), options, false, true},   // a stream from an outsider is closed
			{tcpFrom("198.51.100.7"), options, true, false},  // a trunk's stream goes on
			{udpFrom("::ffff:198.51.100.7"), options, true, false},
		}},
		{"silence off", Config{ScannerSilence: new(false)}, []TrunkConfig{pbx}, []check{
			{udpFrom("203.0.113.5"), options, true, false},   // parsed, to be refused once
			{udpFrom("203.0.113.5"), cancel, false, false},   // never: it would match a ringing INVITE
			{udpFrom("203.0.113.5"), response, false, false}, // never: no transaction waits for it
			{udpFrom("198.51.100.7"), cancel, true, false},
		}},
		{"inbound_auth", Config{}, []TrunkConfig{pbx, {Name: "auth", URI: "sip:192.0.2.11", Username: "u", Password: "p", InboundAuth: true}}, []check{
			{udpFrom("203.0.113.5"), options, true, false}, // parsed, to be challenged
			{udpFrom("203.0.113.5"), cancel, false, false},
			{udpFrom("203.0.113.5"), ack, false, false}, // answers to outsiders are stateless: nothing waits for an ACK
			{udpFrom("198.51.100.7"), ack, true, false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := filterServer(t, tc.cfg, tc.trunks...)
			for _, c := range tc.checks {
				out, err := s.readFilter(c.props, c.data)
				if (err != nil) != c.wantErr {
					t.Errorf("%s from %v: error %v, want error %v", c.data[:7], c.props.RemoteAddr, err, c.wantErr)
				}
				if err != nil && strings.EqualFold(c.props.Transport, "udp") {
					t.Errorf("an error on UDP would stop the listener")
				}
				if pass := len(out) > 0; pass != c.pass {
					t.Errorf("%s from %s %v: passed %v, want %v", c.data[:7], c.props.Transport, c.props.RemoteAddr, pass, c.pass)
				}
			}
		})
	}
	t.Run("outsiders within a budget", func(t *testing.T) {
		s := filterServer(t, Config{ScannerSilence: new(false)}, pbx)
		passed := 0
		for range 100 {
			if out, _ := s.readFilter(udpFrom("203.0.113.5"), options); len(out) > 0 {
				passed++
			}
		}
		if passed < 1 || passed > int(outsiderBurst)+2 {
			t.Errorf("%d of 100 requests at once passed, want the burst of %v", passed, outsiderBurst)
		}
		if out, _ := s.readFilter(udpFrom("198.51.100.7"), options); len(out) == 0 {
			t.Error("the trunk was limited by an outsider's flood")
		}
		if s.Refused() < 100-uint64(passed) {
			t.Errorf("refused counter %d", s.Refused())
		}
	})
	t.Run("pinned inbound_auth caller", func(t *testing.T) {
		s := filterServer(t, Config{}, pbx)
		caller := netip.MustParseAddr("203.0.113.9")
		unpin := s.pin(caller)
		if out, _ := s.readFilter(udpFrom("203.0.113.9"), cancel); len(out) == 0 {
			t.Error("the pinned caller's CANCEL was dropped")
		}
		unpin()
		unpin()
		if out, _ := s.readFilter(udpFrom("203.0.113.9"), options); len(out) != 0 {
			t.Error("the caller still passes once its call ended")
		}
	})
}

func TestResolveTrunkHostsByName(t *testing.T) {
	s := filterServer(t, Config{}, TrunkConfig{Name: "pbx", URI: "sip:localhost:5999"})
	if !s.staticAllowed(netip.MustParseAddr("127.0.0.1")) {
		t.Fatalf("localhost did not resolve to 127.0.0.1: %v", s.trunkTable().order[0].hostIPs)
	}
	if s.staticAllowed(netip.MustParseAddr("127.0.0.2")) {
		t.Fatal("127.0.0.2 taken for the trunk's host")
	}
}
