//go:build e2e

package test

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
)

// shapedConn is a pion customer's UDP socket on one network, shaped the
// way the kernel here cannot (it has no netem): dead, it neither sends nor
// receives (the network went away); with jitter, each datagram it sends
// waits a random time up to jitter first, so that later ones overtake it.
type shapedConn struct {
	net.PacketConn
	dead   atomic.Bool
	jitter time.Duration
	// sent counts the datagrams sent late, reordered those a later
	// datagram overtook.
	sent, reordered atomic.Int64
	seq             atomic.Int64
	newest          atomic.Int64 // the highest seq written so far

	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup
}

// ReadFrom returns the next datagram, or waits for ever while the network
// is dead (the datagrams sent to it are lost).
func (c *shapedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil || !c.dead.Load() {
			return n, addr, err
		}
	}
}

// WriteTo sends b, after a random delay when the conn has jitter; a dead
// conn drops it.
func (c *shapedConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.dead.Load() {
		return len(b), nil
	}
	if c.jitter <= 0 {
		return c.PacketConn.WriteTo(b, addr)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	seq := c.seq.Add(1)
	buf := append([]byte(nil), b...)
	c.wg.Add(1)
	time.AfterFunc(time.Duration(rand.Int64N(int64(c.jitter)+1)), func() {
		defer c.wg.Done()
		c.sent.Add(1)
		for {
			n := c.newest.Load()
			if seq < n {
				c.reordered.Add(1)
				break
			}
			if c.newest.CompareAndSwap(n, seq) {
				break
			}
		}
		_, _ = c.PacketConn.WriteTo(buf, addr)
	})
	return len(b), nil
}

// Close waits for the datagrams still held back, then closes.
func (c *shapedConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.wg.Wait()
	return c.PacketConn.Close()
}

// customerNet is the pion customer's view of its networks, as an ICE UDP
// mux (SettingEngine.SetICEUDPMux): one socket per network, of which the
// current one is where ICE gathers its host candidate. Moving to another
// network kills the old socket, as leaving a Wi-Fi does; the customer's
// ICE restart then gathers on the new one.
type customerNet struct {
	mu    sync.Mutex
	muxes []*ice.UDPMuxDefault
	conns []*shapedConn
}

var _ ice.UDPMux = (*customerNet)(nil)

// newCustomerNet opens the first network on ip, with jitter on what the
// customer sends (0 for none), and, when port is not 0, on that port.
func newCustomerNet(t testing.TB, ip string, port int, jitter time.Duration) *customerNet {
	t.Helper()
	n := &customerNet{}
	n.join(t, ip, port, jitter)
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func (n *customerNet) join(t testing.TB, ip string, port int, jitter time.Duration) {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	c := &shapedConn{PacketConn: pc, jitter: jitter}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.conns = append(n.conns, c)
	n.muxes = append(n.muxes, ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: c}))
}

// cut takes the current network away: nothing goes in or out of its
// socket any more, as when a phone walks out of its Wi-Fi.
func (n *customerNet) cut() {
	n.current().dead.Store(true)
}

// move leaves the current network (cut, if not yet) for a new one on ip.
func (n *customerNet) move(t testing.TB, ip string) {
	t.Helper()
	old := n.current()
	n.join(t, ip, 0, old.jitter)
	old.dead.Store(true)
}

// current is the socket of the network the customer is on.
func (n *customerNet) current() *shapedConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.conns[len(n.conns)-1]
}

// GetListenAddresses is the current network's address: where ICE gathers.
func (n *customerNet) GetListenAddresses() []net.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.muxes[len(n.muxes)-1].GetListenAddresses()
}

// GetConn is the connection for ufrag on the network of addr.
func (n *customerNet) GetConn(ufrag string, addr net.Addr) (net.PacketConn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.muxes {
		for _, a := range m.GetListenAddresses() {
			if a.String() == addr.String() {
				return m.GetConn(ufrag, addr)
			}
		}
	}
	return nil, net.InvalidAddrError("no network at " + addr.String())
}

// RemoveConnByUfrag forgets ufrag's connections on every network.
func (n *customerNet) RemoveConnByUfrag(ufrag string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.muxes {
		m.RemoveConnByUfrag(ufrag)
	}
}

// Close closes every network.
func (n *customerNet) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.muxes {
		_ = m.Close()
	}
	return nil
}
