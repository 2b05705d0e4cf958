package sip

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

// Who may talk to the gateway's SIP port. Every request, in a dialog or
// not, is admitted by its packet source first: a trunk's
// allow_inbound_from, the addresses its host resolved to, or the source an
// inbound_auth call was set up from (a pin). Anything else is an outsider:
// scanner_silence drops its datagrams before they are parsed; otherwise it
// gets one stateless refusal, within a per-source budget.

// Budget of answered requests per outsider address: a token bucket of
// outsiderBurst refilled at outsiderRate per second, for at most
// outsiderSources addresses at once.
const (
	outsiderRate    = 2.0
	outsiderBurst   = 10.0
	outsiderSources = 4096
)

// errFiltered closes a stream connection whose source is refused. It is
// never returned for UDP, where it would stop the listener.
var errFiltered = errors.New("sip: source refused")

// sourceOf returns the IP address a request came from, or the zero Addr.
func sourceOf(req *sipmsg.Request) netip.Addr {
	if ap, err := netip.ParseAddrPort(req.Source()); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := sipmsg.ParseAddr(req.Source())
	if err != nil {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// netAddrIP returns the IP of a transport address without allocating for
// the common UDP and TCP cases.
func netAddrIP(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.UDPAddr:
		return v.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return v.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// resolveTrunkHosts records the addresses of every trunk's host. A name
// that does not resolve leaves that trunk to its allow_inbound_from.
func (s *Server) resolveTrunkHosts(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, tr := range s.trunkTable().order {
		s.resolveTrunkHost(ctx, tr)
	}
}

// resolveTrunkHost sets tr.hostIPs; tr must not be shared yet.
func (s *Server) resolveTrunkHost(ctx context.Context, tr *trunk) {
	if a, err := netip.ParseAddr(tr.host); err == nil {
		tr.hostIPs = []netip.Addr{a.Unmap()}
		return
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", tr.host)
	if err != nil {
		s.log.Warn("trunk host did not resolve; only its allow_inbound_from may send requests", "trunk", tr.cfg.Name, "host", tr.host, "error", err)
		return
	}
	for _, a := range ips {
		tr.hostIPs = append(tr.hostIPs, a.Unmap())
	}
}

// staticAllowed reports whether ip is in a trunk's allow_inbound_from or
// is a trunk host's address.
func (s *Server) staticAllowed(ip netip.Addr) bool {
	for _, tr := range s.trunkTable().order {
		if tr.allows(ip) || tr.isHost(ip) {
			return true
		}
	}
	return false
}

// pinned reports whether an inbound_auth call in progress came from ip.
func (s *Server) pinned(ip netip.Addr) bool {
	s.pinMu.Lock()
	defer s.pinMu.Unlock()
	return s.pins[ip] > 0
}

// pin admits ip through the read filter while an inbound_auth call set
// up from it lasts; the returned function (idempotent) ends that.
func (s *Server) pin(ip netip.Addr) (unpin func()) {
	s.pinMu.Lock()
	s.pins[ip]++
	s.pinMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.pinMu.Lock()
			if s.pins[ip]--; s.pins[ip] <= 0 {
				delete(s.pins, ip)
			}
			s.pinMu.Unlock()
		})
	}
}

// known reports whether ip may be answered at all: a trunk's source or a
// pinned inbound_auth caller.
func (s *Server) known(ip netip.Addr) bool {
	return ip.IsValid() && (s.staticAllowed(ip) || s.pinned(ip))
}

// answersOutsiders reports whether requests from outsiders are parsed
// (to be challenged or refused) instead of dropped on arrival.
func (s *Server) answersOutsiders() bool { return !s.cfg.Silent() || s.wantsAuth() }

// readFilter runs on every datagram (and stream read) before parsing,
// with the sender's address. It passes what trunks and pinned callers
// send, drops the rest when scanner_silence is on and no trunk takes
// digest-authenticated calls, and otherwise passes outsiders' requests
// within their budget. Responses, ACKs and CANCELs from outsiders are
// always dropped, without spending that budget: no transaction of ours
// waits for a response or an ACK (outsiders' answers are stateless), and
// a CANCEL is matched to a ringing INVITE before any handler could check
// its source.
func (s *Server) readFilter(p sipmsg.TransportReadProps, data []byte) ([]byte, error) {
	ip := netAddrIP(p.RemoteAddr)
	if ip.IsValid() && (s.staticAllowed(ip) || s.pinned(ip)) {
		return data, nil
	}
	stream := !strings.EqualFold(p.Transport, "udp")
	refuse := func() ([]byte, error) {
		s.dropped.Add(1)
		if stream {
			return nil, errFiltered
		}
		return nil, nil
	}
	if !ip.IsValid() || !s.answersOutsiders() {
		return refuse()
	}
	if !stream && (bytes.HasPrefix(data, []byte("SIP/")) || bytes.HasPrefix(data, []byte("CANCEL ")) || bytes.HasPrefix(data, []byte("ACK "))) {
		return refuse()
	}
	if !s.outsiders.allow(ip, time.Now()) {
		return refuse()
	}
	return data, nil
}

// sourceLimiter is a token bucket per source address with a bounded
// number of addresses: past the bound, an arbitrary address is forgotten
// (its budget starts afresh if it comes back). Safe for concurrent use.
type sourceLimiter struct {
	rate, burst float64
	max         int

	mu      sync.Mutex
	buckets map[netip.Addr]*tokenBucket
}

type tokenBucket struct {
	tokens float64
	last   time.Time
}

func newSourceLimiter(rate, burst float64, max int) *sourceLimiter {
	return &sourceLimiter{rate: rate, burst: burst, max: max, buckets: map[netip.Addr]*tokenBucket{}}
}

// allow takes one token from ip's bucket at time now and reports whether
// there was one.
func (l *sourceLimiter) allow(ip netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[ip]
	if !ok {
		if len(l.buckets) >= l.max {
			for k := range l.buckets {
				delete(l.buckets, k)
				break
			}
		}
		b = &tokenBucket{tokens: l.burst, last: now}
		l.buckets[ip] = b
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(l.burst, b.tokens+dt*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// size returns how many addresses the limiter tracks.
func (l *sourceLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
