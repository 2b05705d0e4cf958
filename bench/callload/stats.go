package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// percentile returns the q-quantile (0 < q ≤ 1) of ds by nearest rank, or
// 0 for none. ds is sorted in place.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[max(0, min(len(ds)-1, i))]
}

// quantiles formats p50/p95/p99 of ds in milliseconds.
func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n/a"
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }
	return fmt.Sprintf("%s / %s / %s ms", ms(percentile(ds, 0.50)), ms(percentile(ds, 0.95)), ms(percentile(ds, 0.99)))
}

// frameLog keeps, for one call, the arrival times of the returned frames
// that carried the marker.
type frameLog struct {
	good []time.Time
}

// add records a good frame arriving at t.
func (l *frameLog) add(t time.Time) { l.good = append(l.good, t) }

// judge measures the frames of [from, to]: one frame is due every
// frameDur from the start. bad is the share of due frames that did not
// come back with the marker; gap is the longest stretch without a good
// frame beyond the normal frame interval.
func (l *frameLog) judge(from, to time.Time) (due, good int, bad float64, gap time.Duration) {
	if !to.After(from) {
		return 0, 0, 0, 0
	}
	due = int(to.Sub(from)/frameDur) + 1
	prev := from
	for _, t := range l.good {
		if t.Before(from) || t.After(to) {
			continue
		}
		good++
		gap = max(gap, t.Sub(prev)-frameDur)
		prev = t
	}
	gap = max(gap, to.Sub(prev)-frameDur)
	good = min(good, due)
	return due, good, float64(due-good) / float64(due), gap
}

// seqCounter counts the RTP packets of one stream and the ones missing
// from its sequence numbers (RFC 3550 §A.3: expected is the extended
// highest sequence number minus the first, plus one).
type seqCounter struct {
	started  bool
	first    uint64
	highest  uint64
	received uint64
}

// add records a packet with sequence number seq.
func (c *seqCounter) add(seq uint16) {
	c.received++
	if !c.started {
		c.started, c.first, c.highest = true, uint64(seq), uint64(seq)
		return
	}
	// Extend seq to the cycle nearest the highest seen so far.
	ext := c.highest&^0xffff | uint64(seq)
	switch {
	case ext+0x8000 < c.highest:
		ext += 0x10000
	case ext > c.highest+0x8000 && ext >= 0x10000:
		ext -= 0x10000
	}
	if ext > c.highest {
		c.highest = ext
	}
}

// lost returns the packets expected but never received (0 if duplicates
// outnumber them), and the number expected.
func (c *seqCounter) lost() (lost, expected uint64) {
	if !c.started {
		return 0, 0
	}
	expected = c.highest - c.first + 1
	if c.received >= expected {
		return 0, expected
	}
	return expected - c.received, expected
}
