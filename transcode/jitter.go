package transcode

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/pion/rtp"
)

// JitterStatus tells a leg what to do for one playout tick.
type JitterStatus int

const (
	// JitterEmpty means nothing is due: the buffer is filling, or the
	// sender is silent between talk spurts. Write nothing this tick.
	JitterEmpty JitterStatus = iota
	// JitterReady means Pop returned the packet to decode this tick.
	JitterReady
	// JitterLost means a packet was due and is missing (lost, or late and
	// being waited for): conceal one frame, with FEC from Next when the
	// decoder supports it.
	JitterLost
)

// String returns "empty", "ready" or "lost".
func (s JitterStatus) String() string {
	switch s {
	case JitterEmpty:
		return "empty"
	case JitterReady:
		return "ready"
	case JitterLost:
		return "lost"
	}
	return fmt.Sprintf("JitterStatus(%d)", int(s))
}

// JitterConfig configures a Jitter buffer.
type JitterConfig struct {
	// ClockRate is the RTP clock rate of the stream: OpusClockRate for
	// Opus, 8000 for G.711. Required.
	ClockRate int
	// Frame is the duration of one packet and the period at which the leg
	// calls Pop; 0 means 20 ms.
	Frame time.Duration
	// MinDelay and MaxDelay bound the playout delay the buffer adapts
	// between; 0 means 20 ms and 120 ms.
	MinDelay, MaxDelay time.Duration
	// Now is the clock; nil means time.Now. Tests inject a fake one.
	Now func() time.Time
}

// JitterStats counts what a Jitter buffer did.
type JitterStats struct {
	Pushed     uint64 // packets given to Push
	Played     uint64 // packets returned by Pop
	Lost       uint64 // packets never received in time, skipped
	Concealed  uint64 // ticks that returned JitterLost
	Late       uint64 // packets that arrived after their playout time, dropped
	Duplicates uint64 // packets received twice, dropped
	Dropped    uint64 // packets discarded to keep the delay bounded
	Resets     uint64 // stream restarts: new SSRC or sequence jump
	// TimestampJumps counts timestamp discontinuities, left out of Jitter.
	TimestampJumps uint64
	// Jitter is the RFC 3550 §6.4.1 interarrival jitter estimate.
	Jitter time.Duration
	// Target is the playout delay the buffer aims at, from Jitter.
	Target time.Duration
	// Depth is the audio held now, from the next packet due to the newest.
	Depth time.Duration
}

// jitterRing is the number of packet slots: a power of two well above
// MaxDelay/Frame, so that the buffer never needs to grow.
const jitterRing = 256

// jitterResetGap is the sequence distance beyond which a packet is taken
// as a restarted stream rather than a reordering (RFC 3550 §A.1 uses
// MAX_DROPOUT 3000 likewise).
const jitterResetGap = 3000

// jitterLateRestart is how many late packets in sequence order make the
// buffer take them as a restarted stream.
const jitterLateRestart = 8

// jitterShrinkTicks is how long the buffer must hold too much before it
// drops a packet to reduce delay.
const jitterShrinkTicks = 25

type jitterSlot struct {
	pkt *rtp.Packet
	ext int64
}

// Jitter is an adaptive jitter buffer for one RTP stream of audio, on the
// receive path of a leg before the decoder (RFC 3550 §6.4.1, RFC 3551 §4.1).
// The leg's read loop calls Push for each packet it receives and, on a
// ticker of JitterConfig.Frame, Pop once, then acts on the status: decode
// the packet, conceal a lost frame, or write nothing (PopTo does this).
//
// Packets are put back in sequence order across the 16-bit sequence wrap;
// duplicates and packets that come after their playout time are dropped. A
// missing packet is first waited for (the decoder conceals meanwhile, which
// deepens the buffer by one frame, as a late packet asks) and declared lost
// once the buffer holds as much audio after it as the target delay. The
// target follows the measured interarrival jitter between MinDelay and
// MaxDelay; surplus delay is shed one packet at a time, and more than
// MaxDelay is cut at once, so the buffer never grows without bound. A new
// SSRC, a sequence jump, or a run of in-order packets behind the playout
// point restarts the stream; a timestamp jump is kept out of the jitter
// estimate; and a marker bit after a silence (a talk spurt, RFC 3551 §4.1)
// re-buffers to the target before playing.
//
// Push takes ownership of the packet until Pop returns it (or PopTo has
// decoded it, or the buffer dropped it); the caller must not reuse it
// before. Jitter is safe for concurrent use.
type Jitter struct {
	mu    sync.Mutex
	cfg   JitterConfig
	ring  [jitterRing]jitterSlot
	count int

	hasStream   bool
	ssrc        uint32
	highest     int64 // highest extended sequence number received
	next        int64 // next extended sequence number to play
	havePlayed  bool
	started     bool
	firstArrive time.Time
	stallEmpty  int   // ticks concealed in a row with an empty buffer
	waited      int64 // ticks concealed waiting for the packet due next
	advanced    bool  // the last Pop skipped a lost packet (Next is valid)
	surplus     int   // ticks in a row with more delay than needed
	lateRun     int   // late packets in a row, each following the last
	lastLate    int64 // extended sequence number of the last late packet

	epoch       time.Time
	haveTransit bool
	transit     float64 // last relative transit time, RTP units
	jitter      float64 // RFC 3550 J, RTP units
	stats       JitterStats
}

// NewJitter returns an empty buffer for one stream.
func NewJitter(cfg JitterConfig) (*Jitter, error) {
	if cfg.ClockRate <= 0 {
		return nil, fmt.Errorf("transcode: jitter buffer clock rate %d: %w", cfg.ClockRate, ErrBadConfig)
	}
	if cfg.Frame == 0 {
		cfg.Frame = 20 * time.Millisecond
	}
	if cfg.MinDelay == 0 {
		cfg.MinDelay = 20 * time.Millisecond
	}
	if cfg.MaxDelay == 0 {
		cfg.MaxDelay = 120 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch {
	case cfg.Frame < time.Millisecond || cfg.Frame > 120*time.Millisecond:
		return nil, fmt.Errorf("transcode: jitter buffer frame %s: %w", cfg.Frame, ErrBadConfig)
	case cfg.MinDelay < 0 || cfg.MaxDelay < cfg.MinDelay:
		return nil, fmt.Errorf("transcode: jitter buffer delay %s-%s: %w", cfg.MinDelay, cfg.MaxDelay, ErrBadConfig)
	case cfg.MaxDelay > cfg.Frame*jitterRing/2:
		return nil, fmt.Errorf("transcode: jitter buffer max delay %s above %s: %w", cfg.MaxDelay, cfg.Frame*jitterRing/2, ErrBadConfig)
	}
	j := &Jitter{cfg: cfg}
	j.stats.Target = j.target()
	return j, nil
}

// Push adds a received packet. It never blocks and never fails: a packet
// that cannot be played (late, duplicate) is dropped and counted.
func (j *Jitter) Push(p *rtp.Packet) {
	if p == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	now := j.cfg.Now()
	j.stats.Pushed++
	if !j.hasStream || p.SSRC != j.ssrc {
		j.restart(p, now)
	}
	ext := j.extend(p.SequenceNumber)
	if d := ext - j.highest; d > jitterResetGap || d < -jitterResetGap {
		j.restart(p, now)
		ext = j.highest
	}
	slot := &j.ring[ext%jitterRing]
	if slot.pkt != nil && slot.ext == ext {
		j.stats.Duplicates++
		return
	}
	j.measure(p, now)
	if j.havePlayed && ext < j.next {
		j.stats.Late++
		// In-order packets that are all late are a sender that moved its
		// sequence numbers back without a new SSRC (RFC 3550 §A.1 treats
		// such runs the same way): take them as a new stream.
		if ext == j.lastLate+1 {
			j.lateRun++
		} else {
			j.lateRun = 1
		}
		j.lastLate = ext
		if j.lateRun < jitterLateRestart {
			return
		}
		j.stats.Late-- // this one starts the new stream
		j.restart(p, now)
		ext = j.highest
		slot = &j.ring[ext%jitterRing]
	}
	j.lateRun = 0
	if j.havePlayed {
		// Make room: the ring holds sequence numbers next..next+ring-1.
		for ext >= j.next+jitterRing {
			j.skip()
		}
	} else if slot.pkt != nil {
		// Not playing yet and the slot holds a packet a whole ring older.
		slot.pkt = nil
		j.count--
		j.stats.Dropped++
	}
	if j.count == 0 && !j.started {
		j.firstArrive = now
	}
	if p.Marker && j.started && j.count == 0 && j.stallEmpty > 0 && ext == j.next {
		// RFC 3551 §4.1: a talk spurt starts after silence; buffer it to
		// the target delay instead of playing it at once. The sequence
		// numbers run on through a silence, so the spurt's first packet
		// is the one due: a marked packet with a hole before it follows
		// a loss instead (some senders mark every packet), and the lost
		// one is concealed, from this packet's FEC, not skipped.
		j.started = false
		j.firstArrive = now
	}
	*slot = jitterSlot{pkt: p, ext: ext}
	j.count++
	if ext > j.highest {
		j.highest = ext
	}
}

// restart forgets the current stream and takes p as the first packet of a
// new one.
func (j *Jitter) restart(p *rtp.Packet, now time.Time) {
	if j.hasStream {
		j.stats.Resets++
	}
	j.clear()
	j.hasStream = true
	j.ssrc = p.SSRC
	j.highest = 1<<32 + int64(p.SequenceNumber)
	j.epoch = now
}

func (j *Jitter) clear() {
	for i := range j.ring {
		if j.ring[i].pkt != nil {
			j.stats.Dropped++
		}
		j.ring[i] = jitterSlot{}
	}
	j.count = 0
	j.havePlayed, j.started, j.advanced = false, false, false
	j.stallEmpty, j.surplus = 0, 0
	j.haveTransit = false
	j.hasStream = false
}

// Reset empties the buffer and forgets the stream (after hold, or when
// the leg re-negotiates). Statistics are kept.
func (j *Jitter) Reset() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.clear()
	j.stats.Depth = 0
}

// extend maps a 16-bit sequence number to the extended one nearest to the
// highest received, which handles the wrap (RFC 3550 §A.1).
func (j *Jitter) extend(seq uint16) int64 {
	return j.highest + int64(int16(seq-uint16(j.highest)))
}

// measure updates the interarrival jitter (RFC 3550 §6.4.1 and §A.8) with
// the arrival of p. A difference of transit times above one second is not
// jitter but a timestamp jump (a source switched without a new SSRC, or a
// silence the timestamps do not account for): it is counted and left out
// of the estimate. Playout follows sequence numbers, so a jump does not
// disturb it.
func (j *Jitter) measure(p *rtp.Packet, now time.Time) {
	arrival := now.Sub(j.epoch).Seconds() * float64(j.cfg.ClockRate)
	transit := arrival - float64(p.Timestamp)
	if j.haveTransit {
		d := math.Abs(math.Remainder(transit-j.transit, 1<<32))
		if d < float64(j.cfg.ClockRate) {
			j.jitter += (d - j.jitter) / 16
		} else {
			j.stats.TimestampJumps++
		}
	}
	j.transit = transit
	j.haveTransit = true
	j.stats.Jitter = time.Duration(j.jitter / float64(j.cfg.ClockRate) * float64(time.Second))
	j.stats.Target = j.target()
}

// target is the playout delay to aim at: four times the jitter, rounded
// up to whole frames, within MinDelay and MaxDelay.
func (j *Jitter) target() time.Duration {
	f := j.cfg.Frame
	t := time.Duration(4 * j.jitter / float64(j.cfg.ClockRate) * float64(time.Second))
	t = (t + f - 1) / f * f
	return min(max(t, j.cfg.MinDelay), j.cfg.MaxDelay)
}

func (j *Jitter) targetFrames() int64 {
	return max(1, int64((j.target()+j.cfg.Frame-1)/j.cfg.Frame))
}

// skip gives up the packet due next: a packet held is counted as
// Dropped, a missing one as Lost.
func (j *Jitter) skip() {
	slot := &j.ring[j.next%jitterRing]
	if slot.pkt != nil && slot.ext == j.next {
		slot.pkt = nil
		j.count--
		j.stats.Dropped++
	} else {
		j.stats.Lost++
	}
	j.next++
}

// lowest returns the lowest extended sequence number held. Before
// playout starts, packets may have arrived so far apart that the oldest
// fell out of the ring's window behind the highest; those are dropped.
func (j *Jitter) lowest() int64 {
	low := j.highest
	for i := range j.ring {
		s := &j.ring[i]
		switch {
		case s.pkt == nil:
		case s.ext <= j.highest-jitterRing:
			s.pkt = nil
			j.count--
			j.stats.Dropped++
		case s.ext < low:
			low = s.ext
		}
	}
	return low
}

// Pop returns what to play for this tick: JitterReady with the packet,
// JitterLost when a packet is due and missing, or JitterEmpty. Call it
// once per JitterConfig.Frame.
func (j *Jitter) Pop() (*rtp.Packet, JitterStatus) {
	j.mu.Lock()
	defer j.mu.Unlock()
	defer func() { j.stats.Depth = j.depth() }()
	j.advanced = false
	if !j.started {
		if j.count == 0 {
			return nil, JitterEmpty
		}
		now := j.cfg.Now()
		low := j.lowest()
		if now.Sub(j.firstArrive) < j.target() && j.highest-low+1 < j.targetFrames() {
			return nil, JitterEmpty
		}
		if j.havePlayed && low > j.next {
			j.stats.Lost += uint64(low - j.next)
		}
		j.next = low
		j.started, j.havePlayed = true, true
		j.stallEmpty, j.surplus, j.waited = 0, 0, 0
	}
	// Cut a delay above MaxDelay at once, back to the target.
	maxFrames := int64(j.cfg.MaxDelay / j.cfg.Frame)
	if j.highest-j.next+1 > maxFrames+1 {
		for j.highest-j.next+1 > j.targetFrames() {
			j.skip()
		}
	}
	// Shed a surplus held for a while, one packet at a time.
	if j.highest-j.next+1 > j.targetFrames()+2 {
		j.surplus++
		if j.surplus >= jitterShrinkTicks {
			j.surplus = 0
			j.skip()
		}
	} else {
		j.surplus = 0
	}
	slot := &j.ring[j.next%jitterRing]
	if slot.pkt != nil && slot.ext == j.next {
		p := slot.pkt
		slot.pkt = nil
		j.count--
		j.next++
		j.stallEmpty, j.waited = 0, 0
		j.stats.Played++
		return p, JitterReady
	}
	j.stats.Concealed++
	if j.count > 0 && (j.highest-j.next+1 > j.targetFrames() || j.waited >= j.targetFrames()) {
		// Enough audio after the gap, or waited long enough: the packet
		// is lost.
		j.skip()
		j.waited = 0
		j.advanced = true
		return nil, JitterLost
	}
	j.waited++
	if j.count == 0 {
		j.stallEmpty++
		if j.stallEmpty > int(maxFrames) {
			// The sender went quiet (silence suppression, DTX, hold):
			// stop concealing and re-buffer when packets come back.
			j.stats.Concealed--
			j.started = false
			return nil, JitterEmpty
		}
	}
	// Wait for the missing packet one more frame: concealing now and
	// playing it later deepens the buffer, as its lateness asks.
	return nil, JitterLost
}

// Next returns, right after Pop reported JitterLost for a packet it gave
// up on, the packet that follows the lost one if the buffer already holds
// it, so that an Opus decoder can recover the lost frame from its in-band
// FEC. It returns nil otherwise. The packet stays in the buffer.
func (j *Jitter) Next() *rtp.Packet {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.advanced {
		return nil
	}
	if s := j.ring[j.next%jitterRing]; s.pkt != nil && s.ext == j.next {
		return s.pkt
	}
	return nil
}

// PopTo runs one playout tick into dec, the decoder stage of the leg: a
// ready packet's payload is written, a lost frame is concealed (with FEC
// from the next packet when dec is a Concealer), and nothing is written
// when the buffer is empty. It returns the status and the decoder's error.
func (j *Jitter) PopTo(dec BytesWriter) (JitterStatus, error) {
	p, st := j.Pop()
	switch st {
	case JitterReady:
		return st, dec.WriteSample(p.Payload)
	case JitterLost:
		var next []byte
		if n := j.Next(); n != nil {
			next = n.Payload
		}
		return st, Conceal(dec, next)
	}
	return st, nil
}

func (j *Jitter) depth() time.Duration {
	if j.count == 0 {
		return 0
	}
	from := j.next
	if !j.started {
		from = j.lowest()
	}
	return time.Duration(j.highest-from+1) * j.cfg.Frame
}

// Stats returns the counters and the current jitter, target and depth.
func (j *Jitter) Stats() JitterStats {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := j.stats
	s.Depth = j.depth()
	return s
}
