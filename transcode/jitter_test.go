package transcode_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/segue-rtc/segue/transcode"
)

// fakeClock is a manual clock for the jitter buffer.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }
func pkt(ssrc uint32, seq uint16, ts uint32) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SSRC: ssrc, SequenceNumber: seq, Timestamp: ts}, Payload: []byte{byte(seq), byte(seq >> 8)}}
}

const frame = 20 * time.Millisecond

// arrival is a packet reaching the buffer at a time.
type arrival struct {
	at time.Duration
	p  *rtp.Packet
}

// simResult is what the leg saw: statuses per tick and the sequence
// numbers played, in order.
type simResult struct {
	statuses []transcode.JitterStatus
	played   []uint16
	stats    transcode.JitterStats
	maxDepth time.Duration
}

// count counts the ticks with status s up to the last packet played (the
// buffer conceals a few frames after a stream stops, before it knows).
func (r simResult) count(s transcode.JitterStatus) int {
	last := 0
	for i, x := range r.statuses {
		if x == transcode.JitterReady {
			last = i
		}
	}
	n := 0
	for _, x := range r.statuses[:last+1] {
		if x == s {
			n++
		}
	}
	return n
}

// simulate pushes arrivals at their times and pops on a tick every frame
// (offset by phase) until end.
func simulate(t testing.TB, cfg transcode.JitterConfig, arrivals []arrival, phase, end time.Duration) simResult {
	t.Helper()
	clock := newFakeClock()
	start := clock.t
	cfg.Now = clock.now
	j, err := transcode.NewJitter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortStableFunc(arrivals, func(a, b arrival) int { return int(a.at - b.at) })
	var r simResult
	i := 0
	for tick := phase; tick <= end; tick += frame {
		for ; i < len(arrivals) && arrivals[i].at <= tick; i++ {
			clock.t = start.Add(arrivals[i].at)
			j.Push(arrivals[i].p)
		}
		clock.t = start.Add(tick)
		p, st := j.Pop()
		r.statuses = append(r.statuses, st)
		if (p != nil) != (st == transcode.JitterReady) {
			t.Fatalf("Pop returned packet %v with status %s", p, st)
		}
		if p != nil {
			r.played = append(r.played, p.SequenceNumber)
		}
		s := j.Stats()
		r.maxDepth = max(r.maxDepth, s.Depth)
	}
	r.stats = j.Stats()
	return r
}

// stream returns n packets of a 20 ms G.711 stream sent every 20 ms from
// seq0 and ts0, each arriving after delay(i).
func stream(ssrc uint32, seq0 uint16, ts0 uint32, n int, delay func(i int) time.Duration) []arrival {
	var a []arrival
	for i := range n {
		a = append(a, arrival{at: time.Duration(i)*frame + delay(i), p: pkt(ssrc, seq0+uint16(i), ts0+uint32(i)*160)})
	}
	return a
}

func constDelay(d time.Duration) func(int) time.Duration { return func(int) time.Duration { return d } }

func seqs(from uint16, n int) []uint16 {
	var s []uint16
	for i := range n {
		s = append(s, from+uint16(i))
	}
	return s
}

func TestJitterScenarios(t *testing.T) {
	cfg := transcode.JitterConfig{ClockRate: 8000}
	tests := []struct {
		name     string
		arrivals []arrival
		check    func(t *testing.T, r simResult)
	}{
		{
			name:     "in order",
			arrivals: stream(1, 100, 0, 50, constDelay(5*time.Millisecond)),
			check: func(t *testing.T, r simResult) {
				if !slices.Equal(r.played, seqs(100, 50)) {
					t.Errorf("played %v", r.played)
				}
				if r.count(transcode.JitterLost) != 0 || r.stats.Lost != 0 {
					t.Errorf("%d lost ticks, stats %+v", r.count(transcode.JitterLost), r.stats)
				}
			},
		},
		{
			name: "reordered pairs",
			arrivals: stream(1, 0, 0, 40, func(i int) time.Duration {
				if i%2 == 0 {
					return 25 * time.Millisecond // even packets overtake by 5 ms
				}
				return 0
			}),
			check: func(t *testing.T, r simResult) {
				if !slices.Equal(r.played, seqs(0, 40)) {
					t.Errorf("played %v", r.played)
				}
			},
		},
		{
			name: "one lost",
			arrivals: slices.DeleteFunc(stream(1, 10, 0, 30, constDelay(0)), func(a arrival) bool {
				return a.p.SequenceNumber == 20
			}),
			check: func(t *testing.T, r simResult) {
				want := slices.DeleteFunc(seqs(10, 30), func(s uint16) bool { return s == 20 })
				if !slices.Equal(r.played, want) {
					t.Errorf("played %v", r.played)
				}
				// The gap is concealed at once, but with nothing after it
				// buffered yet the packet may still be late: the buffer
				// waits one more frame before giving it up.
				if r.stats.Lost != 1 || r.count(transcode.JitterLost) > 2 {
					t.Errorf("lost %d, lost ticks %d, want 1 and at most 2", r.stats.Lost, r.count(transcode.JitterLost))
				}
			},
		},
		{
			name: "duplicates",
			arrivals: append(stream(1, 0, 0, 30, constDelay(0)),
				arrival{at: 105 * time.Millisecond, p: pkt(1, 5, 800)},
				arrival{at: 106 * time.Millisecond, p: pkt(1, 5, 800)}),
			check: func(t *testing.T, r simResult) {
				if !slices.Equal(r.played, seqs(0, 30)) {
					t.Errorf("played %v", r.played)
				}
				if r.stats.Duplicates+r.stats.Late != 2 {
					t.Errorf("stats %+v, want 2 duplicates or late", r.stats)
				}
			},
		},
		{
			name: "very late packet",
			arrivals: stream(1, 0, 0, 30, func(i int) time.Duration {
				if i == 10 {
					return 300 * time.Millisecond
				}
				return 0
			}),
			check: func(t *testing.T, r simResult) {
				if slices.Contains(r.played, 10) || r.stats.Late != 1 || r.stats.Lost != 1 {
					t.Errorf("played %v, stats %+v: want 10 lost, then late", r.played, r.stats)
				}
			},
		},
		{
			name:     "sequence wrap",
			arrivals: stream(1, 65520, 4294967000, 40, constDelay(3*time.Millisecond)),
			check: func(t *testing.T, r simResult) {
				if !slices.Equal(r.played, seqs(65520, 40)) {
					t.Errorf("played %v", r.played)
				}
			},
		},
		{
			name: "ssrc change",
			arrivals: append(stream(1, 100, 0, 20, constDelay(0)),
				shift(stream(2, 9000, 777, 20, constDelay(0)), 400*time.Millisecond)...),
			check: func(t *testing.T, r simResult) {
				if !slices.Equal(r.played, append(seqs(100, 20), seqs(9000, 20)...)) {
					t.Errorf("played %v", r.played)
				}
				if r.stats.Resets != 1 {
					t.Errorf("resets %d, want 1", r.stats.Resets)
				}
			},
		},
		{
			name: "sequence jump without new ssrc",
			arrivals: append(stream(1, 100, 0, 20, constDelay(0)),
				shift(stream(1, 30000, 160*20, 20, constDelay(0)), 400*time.Millisecond)...),
			check: func(t *testing.T, r simResult) {
				if !slices.Equal(r.played, append(seqs(100, 20), seqs(30000, 20)...)) {
					t.Errorf("played %v", r.played)
				}
				if r.stats.Resets != 1 {
					t.Errorf("resets %d, want 1", r.stats.Resets)
				}
			},
		},
		{
			name: "sequence moved back without new ssrc",
			arrivals: append(stream(1, 1000, 0, 20, constDelay(0)),
				shift(stream(1, 970, 160*20, 30, constDelay(0)), 400*time.Millisecond)...),
			check: func(t *testing.T, r simResult) {
				// The first packets of the new run are taken as late,
				// then the run restarts the stream.
				if r.stats.Resets != 1 || r.stats.Late != 7 {
					t.Errorf("stats %+v, want 1 reset after 7 late packets", r.stats)
				}
				if !slices.Equal(r.played, append(seqs(1000, 20), seqs(977, 23)...)) {
					t.Errorf("played %v", r.played)
				}
			},
		},
		{
			name: "timestamp jump",
			arrivals: append(stream(1, 0, 0, 20, constDelay(0)),
				shift(stream(1, 20, 123456789, 20, constDelay(0)), 400*time.Millisecond)...),
			check: func(t *testing.T, r simResult) {
				if !slices.Equal(r.played, seqs(0, 40)) {
					t.Errorf("played %v", r.played)
				}
				if r.stats.TimestampJumps != 1 || r.stats.Jitter > time.Millisecond {
					t.Errorf("stats %+v: want one timestamp jump kept out of the jitter", r.stats)
				}
			},
		},
		{
			name:     "talk spurts with silence suppression",
			arrivals: talkSpurts(),
			check: func(t *testing.T, r simResult) {
				if !slices.Equal(r.played, seqs(0, 40)) {
					t.Errorf("played %v", r.played)
				}
				if r.stats.Late != 0 || r.stats.Lost != 0 {
					t.Errorf("stats %+v: silence must not make packets late or lost", r.stats)
				}
				// During the 1 s silence the buffer stops concealing.
				if r.count(transcode.JitterEmpty) < 30 || r.count(transcode.JitterLost) > 6 {
					t.Errorf("%d empty ticks, want the silence reported empty", r.count(transcode.JitterEmpty))
				}
			},
		},
		{
			name: "burst after an outage",
			arrivals: stream(1, 0, 0, 100, func(i int) time.Duration {
				if i >= 20 && i < 70 {
					return time.Duration(70-i) * frame // all of 20..69 arrive at once
				}
				return 0
			}),
			check: func(t *testing.T, r simResult) {
				if r.maxDepth > 140*time.Millisecond {
					t.Errorf("depth reached %s, want at most MaxDelay and a frame", r.maxDepth)
				}
				if r.stats.Dropped+r.stats.Late == 0 {
					t.Errorf("stats %+v: the burst must be cut", r.stats)
				}
				if !slices.IsSorted(r.played) {
					t.Errorf("played out of order: %v", r.played)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, simulate(t, cfg, tt.arrivals, 7*time.Millisecond, 4*time.Second))
		})
	}
}

func shift(a []arrival, d time.Duration) []arrival {
	for i := range a {
		a[i].at += d
	}
	return a
}

// talkSpurts is two spurts of 20 packets, the second after 1 s of
// silence, with continuous sequence numbers, a timestamp that jumps over
// the silence and the marker bit on each spurt's first packet (RFC 3551
// §4.1).
func talkSpurts() []arrival {
	a := stream(1, 0, 0, 20, constDelay(2*time.Millisecond))
	b := shift(stream(1, 20, 160*70, 20, constDelay(2*time.Millisecond)), 1400*time.Millisecond)
	a[0].p.Marker, b[0].p.Marker = true, true
	return append(a, b...)
}

// TestJitterAdapts sends with random network delay and checks that the
// target delay follows the jitter: near the minimum on a calm network,
// higher on a jittery one, never above the maximum, and that the deeper
// buffer keeps losses low.
func TestJitterAdapts(t *testing.T) {
	tests := []struct {
		name              string
		spread            time.Duration
		minTarget, maxTgt time.Duration
		maxLostPercent    float64
	}{
		{"calm", 2 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond, 0},
		{"jittery", 40 * time.Millisecond, 40 * time.Millisecond, 120 * time.Millisecond, 5},
		{"stormy", 300 * time.Millisecond, 120 * time.Millisecond, 120 * time.Millisecond, 70},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			n := 500
			arr := stream(7, 1000, 0, n, func(int) time.Duration { return time.Duration(rng.Int64N(int64(tt.spread))) })
			r := simulate(t, transcode.JitterConfig{ClockRate: 8000, MinDelay: 20 * time.Millisecond, MaxDelay: 120 * time.Millisecond}, arr, 3*time.Millisecond, time.Duration(n)*frame+time.Second)
			lost := 100 * float64(r.stats.Lost+r.stats.Late) / float64(n)
			t.Logf("jitter %s target %s lost %d late %d dropped %d resets %d (%.1f%%), max depth %s", r.stats.Jitter, r.stats.Target, r.stats.Lost, r.stats.Late, r.stats.Dropped, r.stats.Resets, lost, r.maxDepth)
			if r.stats.Target < tt.minTarget || r.stats.Target > tt.maxTgt {
				t.Errorf("target %s, want %s to %s", r.stats.Target, tt.minTarget, tt.maxTgt)
			}
			if lost > tt.maxLostPercent {
				t.Errorf("%.1f%% lost or late, want at most %.0f%%", lost, tt.maxLostPercent)
			}
			if r.maxDepth > 140*time.Millisecond {
				t.Errorf("depth reached %s", r.maxDepth)
			}
			if !slices.IsSorted(r.played) {
				t.Error("played out of order")
			}
			if r.stats.Resets != 0 {
				t.Errorf("%d stream restarts on a jittery network", r.stats.Resets)
			}
		})
	}
}

func TestJitterNextForFEC(t *testing.T) {
	clock := newFakeClock()
	j, err := transcode.NewJitter(transcode.JitterConfig{ClockRate: 48000, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []uint16{1, 2, 4, 5} {
		j.Push(pkt(3, s, uint32(s)*960))
	}
	var got []string
	for range 5 {
		p, st := j.Pop()
		switch st {
		case transcode.JitterReady:
			got = append(got, "play "+itoa(int(p.SequenceNumber)))
		case transcode.JitterLost:
			n := j.Next()
			if n == nil {
				t.Fatal("Next is nil after a loss with the following packet buffered")
			}
			got = append(got, "lost, next "+itoa(int(n.SequenceNumber)))
		default:
			got = append(got, st.String())
		}
		clock.add(frame)
	}
	want := []string{"play 1", "play 2", "lost, next 4", "play 4", "play 5"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if j.Next() != nil {
		t.Error("Next after a played packet is not nil")
	}
}

// recordingDecoder is a decoder stage that logs what PopTo made of each tick.
type recordingDecoder struct{ log []string }

func (d *recordingDecoder) WriteSample(p []byte) error {
	d.log = append(d.log, "decode "+itoa(int(p[0])))
	return nil
}
func (d *recordingDecoder) Conceal(next []byte) error {
	if next == nil {
		d.log = append(d.log, "conceal")
	} else {
		d.log = append(d.log, "conceal from "+itoa(int(next[0])))
	}
	return nil
}
func (d *recordingDecoder) SampleRate() int { return 8000 }
func (d *recordingDecoder) String() string  { return "rec" }
func (d *recordingDecoder) Close() error    { return nil }

func TestJitterPopTo(t *testing.T) {
	clock := newFakeClock()
	j, err := transcode.NewJitter(transcode.JitterConfig{ClockRate: 8000, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	dec := &recordingDecoder{}
	if st, err := j.PopTo(dec); st != transcode.JitterEmpty || err != nil || len(dec.log) != 0 {
		t.Fatalf("empty buffer: %s %v %v", st, err, dec.log)
	}
	for _, s := range []uint16{1, 3} {
		j.Push(pkt(3, s, uint32(s)*160))
	}
	for range 3 {
		if _, err := j.PopTo(dec); err != nil {
			t.Fatal(err)
		}
		clock.add(frame)
	}
	want := []string{"decode 1", "conceal from 3", "decode 3"}
	if !slices.Equal(dec.log, want) {
		t.Errorf("log %q, want %q", dec.log, want)
	}
}

func TestJitterConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  transcode.JitterConfig
		ok   bool
	}{
		{"defaults", transcode.JitterConfig{ClockRate: 8000}, true},
		{"no clock rate", transcode.JitterConfig{}, false},
		{"min above max", transcode.JitterConfig{ClockRate: 8000, MinDelay: time.Second, MaxDelay: 100 * time.Millisecond}, false},
		{"max beyond the ring", transcode.JitterConfig{ClockRate: 8000, MaxDelay: time.Hour}, false},
		{"tiny frame", transcode.JitterConfig{ClockRate: 8000, Frame: time.Microsecond}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := transcode.NewJitter(tt.cfg)
			if tt.ok != (err == nil) {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if j != nil && j.Stats().Target != 20*time.Millisecond {
				t.Errorf("initial target %s", j.Stats().Target)
			}
		})
	}
}

// TestJitterProperties runs random streams with reordering, loss,
// duplication, and sequence and timestamp wrap, and checks the invariants:
// packets come out in sequence order, each at most once, only packets
// that were sent, the held delay stays bounded, and the counters add up.
func TestJitterProperties(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 99))
		n := 300 + rng.IntN(300)
		seq0 := uint16(rng.IntN(65536))
		ts0 := rng.Uint32()
		if seed%2 == 0 {
			// Make both counters wrap during the stream.
			seq0 = uint16(65536 - rng.IntN(n))
			ts0 = uint32(1<<32 - 160*rng.IntN(n))
		}
		lossP, dupP := rng.Float64()*0.2, rng.Float64()*0.1
		spread := time.Duration(rng.Int64N(int64(150 * time.Millisecond)))
		var arr []arrival
		sent := map[uint16]bool{}
		for i := range n {
			if rng.Float64() < lossP {
				continue
			}
			p := pkt(5, seq0+uint16(i), ts0+uint32(i)*160)
			sent[p.SequenceNumber] = true
			at := time.Duration(i)*frame + time.Duration(rng.Int64N(int64(spread)+1))
			arr = append(arr, arrival{at: at, p: p})
			if rng.Float64() < dupP {
				d := *p
				arr = append(arr, arrival{at: at + time.Duration(rng.Int64N(int64(50*time.Millisecond))), p: &d})
			}
		}
		r := simulate(t, transcode.JitterConfig{ClockRate: 8000}, arr, time.Duration(rng.Int64N(int64(frame))), time.Duration(n)*frame+time.Second)
		seen := map[uint16]bool{}
		for k, s := range r.played {
			if !sent[s] || seen[s] {
				t.Fatalf("seed %d: played %d (sent %v, already played %v)", seed, s, sent[s], seen[s])
			}
			seen[s] = true
			if k > 0 && int16(s-r.played[k-1]) <= 0 {
				t.Fatalf("seed %d: %d played after %d", seed, s, r.played[k-1])
			}
		}
		if r.maxDepth > 140*time.Millisecond {
			t.Fatalf("seed %d: depth %s", seed, r.maxDepth)
		}
		st := r.stats
		if st.Pushed != uint64(len(arr)) || st.Played != uint64(len(r.played)) {
			t.Fatalf("seed %d: pushed %d of %d, played %d of %d", seed, st.Pushed, len(arr), st.Played, len(r.played))
		}
		if st.Played+st.Late+st.Duplicates+st.Dropped != st.Pushed {
			t.Fatalf("seed %d: played, late, duplicate and dropped do not add up to pushed: %+v", seed, st)
		}
		if st.Depth != 0 {
			t.Fatalf("seed %d: %s still held after the stream ended", seed, st.Depth)
		}
	}
}

// TestJitterLossBeforeMarkedPacket: packets arrive 5 ms after each
// playout tick, so that the buffer is empty when one is due and lost, and
// some senders (pion's sample track among them) set the marker bit on
// every packet. The marked packet after the loss is not the start of a
// talk spurt: the lost one is concealed from it (Opus FEC) a tick later,
// as it is when only the first packet is marked, instead of the buffer
// restarting on it and skipping the loss unconcealed.
func TestJitterLossBeforeMarkedPacket(t *testing.T) {
	for _, everyMarked := range []bool{false, true} {
		t.Run(fmt.Sprintf("every packet marked %v", everyMarked), func(t *testing.T) {
			clock := newFakeClock()
			start := clock.t
			j, err := transcode.NewJitter(transcode.JitterConfig{ClockRate: 8000, Now: clock.now})
			if err != nil {
				t.Fatal(err)
			}
			lost := map[int]bool{20: true, 45: true}
			dec := &recordingDecoder{}
			next := 0
			for tick := range 70 {
				now := time.Duration(tick) * frame
				for ; next < 60 && time.Duration(next)*frame+5*time.Millisecond <= now; next++ {
					if lost[next] {
						continue
					}
					p := pkt(7, uint16(next), uint32(next)*160)
					p.Marker = next == 0 || everyMarked
					clock.t = start.Add(time.Duration(next)*frame + 5*time.Millisecond)
					j.Push(p)
				}
				clock.t = start.Add(now)
				if _, err := j.PopTo(dec); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			for i, l := range dec.log {
				if strings.HasPrefix(l, "conceal") && i > 0 && i < 60 {
					got = append(got, dec.log[i-1]+", "+l)
				}
			}
			want := []string{"decode 19, conceal", "conceal, conceal from 21", "decode 44, conceal from 46"}
			if !slices.Equal(got, want) {
				t.Errorf("concealed %q, want %q", got, want)
			}
			if st := j.Stats(); st.Lost != 2 || st.Resets != 0 {
				t.Errorf("stats %+v, want 2 lost and no restart", st)
			}
		})
	}
}
