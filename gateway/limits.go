package gateway

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// errPeersPerIP refuses a customer peer connection past
// limits.max_peers_per_ip.
var errPeersPerIP = errf(http.StatusTooManyRequests, "busy", "too many calls and video sessions from your network right now; end one and try again")

// isPeerLimit reports whether err is a refusal by reservePeer, which a
// call start passes on as it is.
func isPeerLimit(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && (ae == errPeersPerIP || ae.Code == "rate_limited")
}

// reservePeer takes one of limits.max_peers_per_ip slots of the client
// address ip (by addrKey) for a customer peer connection about to be set
// up, and counts the set-up against limits.peer_starts_per_ip_per_minute
// (whatever its outcome: a set-up that fails costs as much). release
// gives the slot back; it may be called more than once.
func (h *hub) reservePeer(ip string) (release func(), err error) {
	key := addrKey(ip)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.peersByAddr[key] >= h.cfg.Limits.MaxPeersPerIP {
		h.metrics.mediaRefused.WithLabelValues("peers_per_ip").Inc()
		return nil, errPeersPerIP
	}
	now := h.now()
	if ok, wait := h.peerStarts.check(key, now); !ok {
		h.metrics.mediaRefused.WithLabelValues("peer_starts_per_ip").Inc()
		secs := max(int(math.Ceil(wait.Seconds())), 1)
		return nil, &apiError{Status: http.StatusTooManyRequests, Code: "rate_limited", RetryAfter: secs,
			Message: fmt.Sprintf("too many calls and video sessions started from your network; try again in %d seconds", secs)}
	}
	h.peerStarts.add(key, now)
	h.peersByAddr[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.peersByAddr[key]--; h.peersByAddr[key] <= 0 {
				delete(h.peersByAddr, key)
			}
		})
	}, nil
}

// slidingLimiter allows n events per key in any window of the given
// length: it keeps, per key, the times of the events still inside the
// window. Unlike ipLimiter's fixed windows it lets no burst of 2n through
// across a window's edge, which matters when each event is a paid call.
// Memory is bounded by the keys with an event in the last window (at most
// n times each); n <= 0 allows everything and keeps nothing.
type slidingLimiter struct {
	mu     sync.Mutex
	n      int
	window time.Duration
	events map[string][]time.Time
	swept  time.Time
}

func newSlidingLimiter(n int, window time.Duration) *slidingLimiter {
	return &slidingLimiter{n: n, window: window, events: map[string][]time.Time{}}
}

// pruneLocked drops key's events that left the window, and once per
// window forgets every key whose events all left it.
func (l *slidingLimiter) pruneLocked(key string, now time.Time) []time.Time {
	if now.Sub(l.swept) >= l.window {
		for k, ts := range l.events {
			if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= l.window {
				delete(l.events, k)
			}
		}
		l.swept = now
	}
	ts := l.events[key]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= l.window {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.events, key)
		return nil
	}
	l.events[key] = ts
	return ts
}

// check reports whether key may have one more event at now, without
// counting it; if not, wait is how long until the oldest event leaves
// the window.
func (l *slidingLimiter) check(key string, now time.Time) (ok bool, wait time.Duration) {
	if l.n <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := l.pruneLocked(key, now)
	if len(ts) < l.n {
		return true, 0
	}
	return false, ts[len(ts)-l.n].Add(l.window).Sub(now)
}

// add counts an event for key at now (the caller checked first).
func (l *slidingLimiter) add(key string, now time.Time) {
	if l.n <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := l.pruneLocked(key, now)
	i, _ := slices.BinarySearchFunc(ts, now, time.Time.Compare)
	l.events[key] = slices.Insert(ts, i, now)
}

// remove takes back an event counted for key at t (one that did not
// happen after all).
func (l *slidingLimiter) remove(key string, t time.Time) {
	if l.n <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := l.events[key]
	if i := slices.IndexFunc(ts, t.Equal); i >= 0 {
		ts = slices.Delete(ts, i, i+1)
	}
	if len(ts) == 0 {
		delete(l.events, key)
		return
	}
	l.events[key] = ts
}

// addrKey is the key of a client address for per-address limits: an IPv4
// address as it is, an IPv6 address by its /64 (one subscriber's network:
// a host picks any address in it at will). Anything unparsable is its own
// key.
func addrKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a, 64).Masked().String()
}

// reset forgets every event of key (a success that clears past failures).
func (l *slidingLimiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.events, key)
}
