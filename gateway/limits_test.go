package gateway

import (
	"strings"
	"testing"
	"time"
)

func TestSlidingLimiter(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	type step struct {
		min      int    // minutes after t0
		key      string // "a" unless set
		add      bool   // count an event (after the check)
		wantOK   bool
		wantWait time.Duration
	}
	for _, tc := range []struct {
		name  string
		n     int
		steps []step
	}{
		{"n per window, then wait for the oldest", 2, []step{
			{min: 0, add: true, wantOK: true},
			{min: 10, add: true, wantOK: true},
			{min: 20, wantOK: false, wantWait: 40 * time.Minute},
			{min: 59, wantOK: false, wantWait: time.Minute},
			{min: 60, add: true, wantOK: true}, // the first left the window
			{min: 61, wantOK: false, wantWait: 9 * time.Minute},
		}},
		{"no burst across a window's edge", 3, []step{
			{min: 58, add: true, wantOK: true},
			{min: 59, add: true, wantOK: true},
			{min: 59, add: true, wantOK: true},
			{min: 61, wantOK: false, wantWait: 57 * time.Minute},
		}},
		{"keys are apart", 1, []step{
			{min: 0, key: "a", add: true, wantOK: true},
			{min: 1, key: "b", add: true, wantOK: true},
			{min: 2, key: "a", wantOK: false, wantWait: 58 * time.Minute},
			{min: 2, key: "b", wantOK: false, wantWait: 59 * time.Minute},
			{min: 2, key: "c", wantOK: true},
		}},
		{"checks count nothing", 1, []step{
			{min: 0, wantOK: true},
			{min: 1, wantOK: true},
			{min: 2, add: true, wantOK: true},
			{min: 3, wantOK: false, wantWait: 59 * time.Minute},
		}},
		{"zero is unlimited", 0, []step{
			{min: 0, add: true, wantOK: true},
			{min: 0, add: true, wantOK: true},
			{min: 0, add: true, wantOK: true},
			{min: 1, wantOK: true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newSlidingLimiter(tc.n, time.Hour)
			for i, s := range tc.steps {
				key := s.key
				if key == "" {
					key = "a"
				}
				ok, wait := l.check(key, at(s.min))
				if ok != s.wantOK || (!ok && wait != s.wantWait) {
					t.Fatalf("step %d (%+v): check = %v, %v; want %v, %v", i, s, ok, wait, s.wantOK, s.wantWait)
				}
				if s.add {
					l.add(key, at(s.min))
				}
			}
		})
	}
}

// TestSlidingLimiterRemoveAndMemory: an event taken back no longer counts,
// and keys whose events left the window are forgotten.
func TestSlidingLimiterRemoveAndMemory(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	l := newSlidingLimiter(1, time.Hour)
	l.add("a", t0)
	if ok, _ := l.check("a", t0.Add(time.Minute)); ok {
		t.Fatal("a second event allowed")
	}
	l.remove("a", t0)
	if ok, _ := l.check("a", t0.Add(time.Minute)); !ok {
		t.Fatal("an event taken back still counts")
	}
	for i := range 1000 {
		l.add(strings.Repeat("k", i%50)+string(rune('a'+i%26)), t0.Add(time.Duration(i)*time.Second))
	}
	l.check("z", t0.Add(3*time.Hour))
	l.mu.Lock()
	n := len(l.events)
	l.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d keys kept after their events left the window", n)
	}
}

func TestAddrKey(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"not-an-ip", "not-an-ip"},
	} {
		if got := addrKey(tc.a); got != tc.b {
			t.Errorf("addrKey(%q) = %q, want %q", tc.a, got, tc.b)
		}
	}
	if addrKey("2001:db8:1:2::1") == addrKey("2001:db8:1:3::1") {
		t.Error("two /64s share a key")
	}
}
