package main

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.95: 95 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := percentile(ds, q); got != want {
			t.Errorf("p%v = %v, want %v", q*100, got, want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile of nothing = %v", got)
	}
	if got := percentile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("percentile of one = %v", got)
	}
}

func TestFrameLogJudge(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var l frameLog
	// One second of frames, with frames 10-19 (200 ms) missing.
	for i := range 50 {
		if i >= 10 && i < 20 {
			continue
		}
		l.add(t0.Add(time.Duration(i) * frameDur))
	}
	l.add(t0.Add(-time.Second)) // before the window: not counted
	due, good, bad, gap := l.judge(t0, t0.Add(49*frameDur))
	if due != 50 || good != 40 {
		t.Errorf("due %d good %d, want 50 and 40", due, good)
	}
	if bad != 0.2 {
		t.Errorf("bad %v, want 0.2", bad)
	}
	if gap != 200*time.Millisecond {
		t.Errorf("longest gap %v, want 200ms", gap)
	}
	// Nothing came back: everything is bad and the gap is the window.
	var none frameLog
	if _, _, bad, gap := none.judge(t0, t0.Add(time.Second)); bad != 1 || gap != time.Second-frameDur {
		t.Errorf("empty log: bad %v gap %v", bad, gap)
	}
}

func TestSeqCounter(t *testing.T) {
	var c seqCounter
	// Across the wrap, with 65534 lost, 2 reordered and one duplicate.
	for _, s := range []uint16{65530, 65531, 65532, 65533, 65535, 1, 0, 2, 2, 3} {
		c.add(s)
	}
	lost, expected := c.lost()
	if expected != 10 || lost != 0 {
		// 10 received (one duplicate) for 10 expected: the duplicate hides the loss.
		t.Errorf("lost %d of %d, want 0 of 10", lost, expected)
	}
	var d seqCounter
	for _, s := range []uint16{10, 11, 14, 15} {
		d.add(s)
	}
	if lost, expected := d.lost(); lost != 2 || expected != 6 {
		t.Errorf("lost %d of %d, want 2 of 6", lost, expected)
	}
	var e seqCounter
	if lost, expected := e.lost(); lost != 0 || expected != 0 {
		t.Errorf("empty counter: %d of %d", lost, expected)
	}
}

// TestCrossCheck reads the gateway's side of the cross-check from its
// call record and metrics: what survives the drops both ways over the
// frames due and the network loss of both legs, refusals by reason, drops
// by series.
func TestCrossCheck(t *testing.T) {
	x := crossCheck{due: 500, dropPhone: 5, dropCust: 10, netPhone: 1, netCust: 0.5}
	// Kept: 0.99 × 0.995 × 0.99 × 0.98.
	if got, want := x.gateway(), 1-0.99*0.995*0.99*0.98; got < want-1e-9 || got > want+1e-9 {
		t.Errorf("gateway's bad share %.5f, want %.5f", got, want)
	}
	r := &report{refusedMetric: map[string]float64{}, droppedMetric: -1, droppedBy: map[string]float64{}}
	r.readMetrics(map[string]float64{
		`segue_calls_refused_total{reason="max_calls"}`:                                           10,
		`segue_calls_refused_total{reason="scheduler_lag"}`:                                       2,
		`segue_media_frames_dropped_total{direction="send",leg="sip",reason="clock_stall"}`:       3,
		`segue_media_frames_dropped_total{direction="receive",leg="webrtc",reason="jitter_drop"}`: 4,
		`go_goroutines`: 100,
	})
	if r.refusedMetric["max_calls"] != 10 || r.refusedMetric["scheduler_lag"] != 2 || len(r.refusedMetric) != 2 {
		t.Errorf("refusals %v", r.refusedMetric)
	}
	if r.droppedMetric != 7 || len(r.droppedBy) != 2 {
		t.Errorf("drops %v, by series %v", r.droppedMetric, r.droppedBy)
	}
	if got := formatCounts(r.refusedMetric); got != "max_calls 10, scheduler_lag 2" {
		t.Errorf("formatCounts = %q", got)
	}
	if got := intRange([]int{60, 1, 60}); got != "1-60" {
		t.Errorf("intRange = %q", got)
	}
}
