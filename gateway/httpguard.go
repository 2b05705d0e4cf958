package gateway

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// Bounds of the HTTP server. A client that sends slower than these is
// cut off, so that a trickle of bytes cannot hold a connection for good.
const (
	// maxHeaderBytes caps a request's header block (net/http's default is
	// 1 MiB).
	maxHeaderBytes = 64 << 10
	// readHeaderTimeout is how long a client has to send its headers.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes a keep-alive connection with no request.
	idleTimeout = 120 * time.Second
	// requestReadTimeout and requestWriteTimeout bound reading the body
	// of, and writing the reply to, every request other than uploads,
	// downloads and WebSockets.
	requestReadTimeout  = 30 * time.Second
	requestWriteTimeout = 60 * time.Second
	// transferGrace and minTransferRate make the deadline of an upload or
	// a download: it must have moved minTransferRate bytes a second on
	// average, counted after transferGrace. A mobile uplink does several
	// times that; a drip of a few bytes a second ends after the grace.
	transferGrace   = 10 * time.Second
	minTransferRate = 8 << 10
)

// clientIP is the address of the client behind r. The peer address is it,
// unless the peer is a trusted proxy (http.trusted_proxies): then the
// X-Forwarded-For hops are read from the right, each added by the proxy
// before it, and the first hop that is not a trusted proxy is the
// client. Hops further left were written by the client and are ignored.
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr := peer.Unmap().WithZone("")
	if !s.trustedProxy(addr) {
		return addr.String()
	}
	hops := forwardedHops(r.Header.Values("X-Forwarded-For"))
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			break // a hop our proxy would not write: keep the last trusted address
		}
		addr = a
		if !s.trustedProxy(a) {
			break
		}
	}
	return addr.String()
}

// trustedProxy reports whether a is in http.trusted_proxies.
func (s *Server) trustedProxy(a netip.Addr) bool {
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedHops splits X-Forwarded-For header lines, in order, into hops.
func forwardedHops(values []string) []string {
	var hops []string
	for _, v := range values {
		for _, h := range strings.Split(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	return hops
}

// parseHop reads one X-Forwarded-For hop: an address, with or without a
// port ("192.0.2.1", "192.0.2.1:443", "2001:db8::1", "[2001:db8::1]:443").
func parseHop(h string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(h); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// setDeadlines sets the read and write deadlines of r's connection; a zero
// time clears one. Every route sets both, so that a deadline never
// outlives its request on a keep-alive connection.
func setDeadlines(w http.ResponseWriter, read, write time.Time) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(read)
	_ = rc.SetWriteDeadline(write)
}

// withDeadlines gives a route the default request deadlines.
func withDeadlines(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		setDeadlines(w, now.Add(requestReadTimeout), now.Add(requestWriteTimeout))
		h.ServeHTTP(w, r)
	})
}

// transferWindow is the longest an upload or download of n bytes may take
// at minTransferRate.
func transferWindow(n int64) time.Duration {
	return transferGrace + time.Duration(n/minTransferRate)*time.Second
}

// rateReader is a request body that must arrive at minTransferRate on
// average after transferGrace: each read moves the connection's read
// deadline to start + grace + received/rate, so a client that keeps up
// never meets it and one that drips does, within the grace.
type rateReader struct {
	io.ReadCloser
	rc       *http.ResponseController
	start    time.Time
	received int64
}

func newRateReader(w http.ResponseWriter, body io.ReadCloser) *rateReader {
	r := &rateReader{ReadCloser: body, rc: http.NewResponseController(w), start: time.Now()}
	_ = r.rc.SetReadDeadline(r.deadline())
	return r
}

func (r *rateReader) deadline() time.Time {
	return r.start.Add(transferGrace + time.Duration(r.received*int64(time.Second)/minTransferRate))
}

func (r *rateReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		r.received += int64(n)
		_ = r.rc.SetReadDeadline(r.deadline())
	}
	return n, err
}

// isTimeout reports whether err is a connection deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// connLimiter caps the connections open at once from one client address
// (an IPv6 /64). Trusted proxies carry many clients and are exempt.
type connLimiter struct {
	max     int
	trusted func(netip.Addr) bool
	refused func()

	mu   sync.Mutex
	open map[string]int
}

// limitListener wraps ln so that it closes, as soon as they arrive,
// connections past the cap.
func (l *connLimiter) limitListener(ln net.Listener) net.Listener {
	if l.max <= 0 {
		return ln
	}
	return &limitedListener{Listener: ln, l: l}
}

// acquire counts a connection from addr; it reports false (counting
// nothing) when addr already has max open. key is what to release.
func (l *connLimiter) acquire(addr net.Addr) (key string, ok bool) {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return "", true
	}
	a := ap.Addr().Unmap().WithZone("")
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.trusted != nil && l.trusted(a) {
		return "", true
	}
	key = addrKey(a.String())
	if l.open[key] >= l.max {
		return "", false
	}
	l.open[key]++
	return key, true
}

func (l *connLimiter) release(key string) {
	if key == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key]--; l.open[key] <= 0 {
		delete(l.open, key)
	}
}

type limitedListener struct {
	net.Listener
	l *connLimiter
}

func (ll *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, ok := ll.l.acquire(c.RemoteAddr())
		if !ok {
			if ll.l.refused != nil {
				ll.l.refused()
			}
			_ = c.Close()
			continue
		}
		return &limitedConn{Conn: c, release: func() { ll.l.release(key) }}, nil
	}
}

// limitedConn gives its slot back once, when closed.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
