package gateway

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

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
