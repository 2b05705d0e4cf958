package sip

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// portPool hands out even RTP ports (RTCP on the next odd one) from a
// range. A released port rests before it is handed out again, so that
// late packets of the previous call are not taken for the next one's.
type portPool struct {
	mu     sync.Mutex
	lo, hi int
	next   int
	used   map[int]bool
	rest   map[int]time.Time
	restD  time.Duration
	now    func() time.Time
}

func newPortPool(lo, hi int, rest time.Duration) *portPool {
	if lo%2 == 1 {
		lo++
	}
	return &portPool{lo: lo, hi: hi, next: lo, used: map[int]bool{}, rest: map[int]time.Time{}, restD: rest, now: time.Now}
}

// listen binds an RTP/RTCP socket pair on ip and returns them with the RTP port.
func (p *portPool) listen(ip netip.Addr) (rtpConn, rtcpConn *net.UDPConn, port int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := (p.hi - p.lo + 1) / 2
	now := p.now()
	for i := 0; i < n; i++ {
		port := p.next
		p.next += 2
		if p.next+1 > p.hi {
			p.next = p.lo
		}
		if p.used[port] {
			continue
		}
		if t, ok := p.rest[port]; ok {
			if now.Before(t) {
				continue
			}
			delete(p.rest, port)
		}
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
