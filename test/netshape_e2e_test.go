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
	"github.com/zaf/g711"

	"github.com/segue-rtc/segue/transcode/audiotest"
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
	// rtp measures the jitter of the RTP sent (48 kHz clock: Opus).
	rtp rtpJitter

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
		if ts, ok := isRTP(buf); ok {
			c.rtp.sent(time.Now(), ts)
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
	c := &shapedConn{PacketConn: pc, jitter: jitter, rtp: rtpJitter{rate: 48000}}
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

// rtpJitter is the RFC 3550 §6.4.1 interarrival jitter of a stream as its
// packets leave a shaping sender, from their send times and RTP
// timestamps: what a receiver a loopback hop away should report.
type rtpJitter struct {
	mu      sync.Mutex
	rate    float64
	have    bool
	transit float64 // seconds
	j       float64 // seconds
}

// sent records that the RTP packet of timestamp ts left at t.
func (r *rtpJitter) sent(t time.Time, ts uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	transit := float64(t.UnixNano())/1e9 - float64(ts)/r.rate
	if r.have {
		d := transit - r.transit
		if d < 0 {
			d = -d
		}
		r.j += (d - r.j) / 16
	}
	r.transit, r.have = transit, true
}

// ms is the jitter so far, in milliseconds.
func (r *rtpJitter) ms() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.j * 1000
}

// isRTP reports whether b is an RTP packet (not RTCP, STUN or DTLS) and
// returns its timestamp.
func isRTP(b []byte) (uint32, bool) {
	if len(b) < 12 || b[0]>>6 != 2 || (b[1] >= 192 && b[1] <= 223) {
		return 0, false
	}
	return uint32(b[4])<<24 | uint32(b[5])<<16 | uint32(b[6])<<8 | uint32(b[7]), true
}

// jitterPhone is the media end of a desk phone whose audio reaches the
// gateway with jitter: SIPp answers the call (uas_media_at.xml) with an
// SDP that points here, and this socket sends a PCMU tone on a 20 ms
// clock toward where the gateway's RTP comes from, each packet held back
// a random time up to jitter first (so that packets overtake each other).
type jitterPhone struct {
	conn   *net.UDPConn
	jitter time.Duration
	rtp    rtpJitter
	// sent and reordered count the packets sent and those a later
	// packet overtook.
	sent, reordered atomic.Int64
	stop            chan struct{}
	wg              sync.WaitGroup
}

// startJitterPhone listens on an even port of 127.0.0.1 and starts
// sending a tone of hz once the gateway's RTP arrives, until the test
// ends.
func startJitterPhone(t *testing.T, hz float64, jitter time.Duration) *jitterPhone {
	t.Helper()
	var conn *net.UDPConn
	for conn == nil {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		if c.LocalAddr().(*net.UDPAddr).Port%2 == 0 {
			conn = c
		} else {
			c.Close()
		}
	}
	p := &jitterPhone{conn: conn, jitter: jitter, rtp: rtpJitter{rate: 8000}, stop: make(chan struct{})}
	gw := make(chan *net.UDPAddr, 1)
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 1500)
		for first := true; ; first = false {
			_, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if first {
				gw <- from
			}
		}
	}()
	go func() {
		defer p.wg.Done()
		var to *net.UDPAddr
		select {
		case to = <-gw:
		case <-p.stop:
			return
		}
		tone := audiotest.Tone(8000, hz, 0.5, 10*time.Second)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		var newest atomic.Int64
		var pending sync.WaitGroup
		defer pending.Wait()
		for seq, off := 1, 0; ; seq, off = seq+1, (off+160)%len(tone) {
			select {
			case <-p.stop:
				return
			case <-tk.C:
			}
			ts := uint32(seq * 160)
			pkt := []byte{0x80, 0, byte(seq >> 8), byte(seq), byte(ts >> 24), byte(ts >> 16), byte(ts >> 8), byte(ts), 0x5e, 0x9a, 0x11, 0x07}
			for _, s := range tone[off : off+160] {
				pkt = append(pkt, g711.EncodeUlawFrame(s))
			}
			n := int64(seq)
			pending.Add(1)
			time.AfterFunc(time.Duration(rand.Int64N(int64(jitter)+1)), func() {
				defer pending.Done()
				for {
					cur := newest.Load()
					if n < cur {
						p.reordered.Add(1)
						break
					}
					if newest.CompareAndSwap(cur, n) {
						break
					}
				}
				p.rtp.sent(time.Now(), ts)
				p.sent.Add(1)
				_, _ = conn.WriteToUDP(pkt, to)
			})
		}
	}()
	t.Cleanup(func() {
		close(p.stop)
		conn.Close()
		p.wg.Wait()
	})
	return p
}

// port is the phone's RTP port, for its SDP.
func (p *jitterPhone) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }
