//go:build e2e

package test

import (
	"net"
	"strings"
	"testing"
	"time"
)

// outsiderIP is the loopback address attack tests send from: a host that
// is in no trunk's allow_inbound_from (which is 127.0.0.1/32 in every test
// config), reached the way a real attacker reaches the gateway.
const outsiderIP = "127.0.0.2"

// outsider is a raw UDP socket on outsiderIP, for attack tests that speak
// SIP or RTP by hand.
type outsider struct {
	t    testing.TB
	conn *net.UDPConn
}

// newOutsider binds a UDP socket on outsiderIP (port 0 picks one).
func newOutsider(t testing.TB) *outsider {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(outsiderIP)})
	if err != nil {
		t.Fatalf("outsider socket: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &outsider{t: t, conn: c}
}

// Addr is the outsider's address, ip:port.
func (o *outsider) Addr() string { return o.conn.LocalAddr().String() }

// send writes one datagram to addr (host:port).
func (o *outsider) send(addr string, b []byte) {
	o.t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		o.t.Fatalf("outsider: %v", err)
	}
	if _, err := o.conn.WriteToUDP(b, ua); err != nil {
		o.t.Fatalf("outsider send: %v", err)
	}
}

// sendSIP sends a SIP message given with "\n" line ends; they become CRLF.
func (o *outsider) sendSIP(addr, msg string) {
	o.t.Helper()
	o.send(addr, []byte(strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")))
}

// readAll collects every datagram that arrives within d, with the total
// bytes received.
func (o *outsider) readAll(d time.Duration) (msgs [][]byte, total int) {
	deadline := time.Now().Add(d)
	buf := make([]byte, 65536)
	for {
		_ = o.conn.SetReadDeadline(deadline)
		n, _, err := o.conn.ReadFromUDP(buf)
		if err != nil { // the deadline passed (or the socket closed)
			return msgs, total
		}
		msgs = append(msgs, append([]byte(nil), buf[:n]...))
		total += n
	}
}
