package webrtc

import (
	"testing"
	"time"
)

// TestMediaGaps: the silences between packets of the browser's audio
// that reach MinMediaGap are counted, with the longest kept; shorter
// ones (jitter) and the wait before the first packet are not.
func TestMediaGaps(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name     string
		arrivals []time.Duration // after t0
		gaps     uint64
		longest  time.Duration
	}{
		{"steady 20 ms", []time.Duration{0, 20, 40, 60, 80}, 0, 0},
		{"jitter under the bound", []time.Duration{0, 120, 140, 360, 380}, 0, 0},
		{"one gap at the bound", []time.Duration{0, 20, 270, 290}, 1, 250 * time.Millisecond},
		{"ICE restart then a shorter gap", []time.Duration{0, 20, 1820, 1840, 2140}, 2, 1800 * time.Millisecond},
		{"first packet late", []time.Duration{5000, 5020}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c rxCounters
			for _, a := range tc.arrivals {
				c.arrived(t0.Add(a * time.Millisecond))
			}
			if g := c.gaps.Load(); g != tc.gaps {
				t.Errorf("gaps = %d, want %d", g, tc.gaps)
			}
			if l := time.Duration(c.longest.Load()); l != tc.longest {
				t.Errorf("longest gap = %v, want %v", l, tc.longest)
			}
		})
	}
}
