//go:build e2e

package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

// TestCallLoadAgainstSegue runs the tool as make bench-calls does, briefly:
// a real segue serve, SIPp echoing behind its trunk, three customers held
// for six seconds. Every call is established, and at least 95 % of the
// 20 ms frames that were due came back carrying the customers' marker tone.
func TestCallLoadAgainstSegue(t *testing.T) {
	bin := e2eSegueBin(t)
	var out strings.Builder
	o := options{calls: 3, ramp: 10, hold: 6 * time.Second, setupTimeout: 15 * time.Second, start: true,
		segueBin: bin, agentCount: 2, progress: io.Discard}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reports, err := runReports(ctx, o, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	r := reports[0]
	if r.established != 3 {
		t.Fatalf("%d of 3 calls established; failures %v", r.established, r.failures)
	}
	for i, bad := range r.bad {
		if bad > 0.05 {
			t.Errorf("call %d: %.1f%% of frames came back without the marker, want at most 5%%", i, 100*bad)
		}
	}
	if len(r.setupAudio) != 3 {
		t.Errorf("%d calls heard their audio come back, want 3", len(r.setupAudio))
	}
	if r.records != 3 {
		t.Errorf("%d call records read from the gateway, want 3", r.records)
	}
	if r.rssLoaded <= r.rssIdle || r.gwCPU <= 0 {
		t.Errorf("no gateway figures: CPU %.3f, RSS %d → %d", r.gwCPU, r.rssIdle, r.rssLoaded)
	}
	if r.goroutinesLoaded <= r.goroutinesIdle {
		t.Errorf("goroutines %d idle, %d loaded: the admin listener's metrics were not read", r.goroutinesIdle, r.goroutinesLoaded)
	}
}
