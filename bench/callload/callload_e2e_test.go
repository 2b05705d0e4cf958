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
// a real segue serve, SIPp echoing behind its trunk, four customers for a
// gateway with limits.max_calls 3, held for six seconds. Three calls are
// established, the fourth is refused busy with retry_after and counted in
// segue_calls_refused_total; at least 95 % of the 20 ms frames that were
// due came back carrying the customers' marker tone, the ping timed the
// round trips, and the gateway's records are there for the cross-check.
func TestCallLoadAgainstSegue(t *testing.T) {
	bin := e2eSegueBin(t)
	var out strings.Builder
	o := options{calls: 4, maxCalls: 3, ramp: 10, hold: 6 * time.Second, setupTimeout: 15 * time.Second, start: true,
		segueBin: bin, agentCount: 2, progress: io.Discard, settle: 200 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reports, err := runReports(ctx, o, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	r := reports[0]
	if r.established != 3 || r.refused != 1 {
		t.Fatalf("%d of 4 calls established, %d refused busy, want 3 and 1; failures %v", r.established, r.refused, r.failures)
	}
	if r.retryAfter[0] <= 0 || r.refusedMetric["max_calls"] != 1 {
		t.Errorf("refusal with retry_after %d s, segue_calls_refused_total %v: want a retry_after and max_calls 1", r.retryAfter[0], r.refusedMetric)
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
	if len(r.rtts) < 3 {
		t.Errorf("%d round trips timed by the ping, want one per call at least", len(r.rtts))
	}
	for _, d := range r.rtts {
		if d < 20*time.Millisecond || d >= pingEvery*frameDur {
			t.Errorf("round trip %v: not the ping's own", d)
		}
	}
	if len(r.cross) != 3 || r.droppedMetric < 0 {
		t.Errorf("cross-check of %d calls, metrics' drops %v: want 3 calls and the metric read", len(r.cross), r.droppedMetric)
	}
	if r.goroutinesLoaded <= r.goroutinesIdle {
		t.Errorf("goroutines %d idle, %d loaded: the admin listener's metrics were not read", r.goroutinesIdle, r.goroutinesLoaded)
	}
}
