package sip

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"
)

// portPool hands out even RTP ports (RTCP on the next odd one) from a
// range, each time a pair picked at random among the free ones, so that
// the port of the next call cannot be guessed from the last one's. A
// released port rests before it is handed out again, so that late
// packets of the previous call are not taken for the next one's.
type portPool struct {
	mu     sync.Mutex
	lo, hi int
	used   map[int]bool
	rest   map[int]time.Time
	restD  time.Duration
	now    func() time.Time
	intn   func(n int) int // random in [0, n)
}

func newPortPool(lo, hi int, rest time.Duration) *portPool {
	if lo%2 == 1 {
		lo++
	}
	return &portPool{lo: lo, hi: hi, used: map[int]bool{}, rest: map[int]time.Time{}, restD: rest, now: time.Now, intn: rand.IntN}
}

// listen binds an RTP/RTCP socket pair on ip, on an even port picked at
// random among those neither in use nor resting, and returns them with
// the RTP port. A pair that fails to bind (taken by another process) is
// passed over.
func (p *portPool) listen(ip netip.Addr) (rtpConn, rtcpConn *net.UDPConn, port int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	var free []int
	for port := p.lo; port+1 <= p.hi; port += 2 {
		if p.used[port] {
			continue
		}
		if t, ok := p.rest[port]; ok {
			if now.Before(t) {
				continue
			}
			delete(p.rest, port)
		}
		free = append(free, port)
	}
	for len(free) > 0 {
		i := p.intn(len(free))
		port := free[i]
		free[i] = free[len(free)-1]
		free = free[:len(free)-1]
		a, err1 := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
		if err1 != nil {
			continue
		}
		b, err2 := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port+1))))
		if err2 != nil {
			a.Close()
			continue
		}
		p.used[port] = true
		return a, b, port, nil
	}
	return nil, nil, 0, fmt.Errorf("%w in %d-%d", ErrNoPorts, p.lo, p.hi)
}

// release returns port to the pool after the rest period.
func (p *portPool) release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.used, port)
	p.rest[port] = p.now().Add(p.restD)
}
