package webrtc

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// A browser that receives video from the gateway reports lost packets
// with generic NACKs (RFC 4585 §6.2.1), and pion's NACK responder resends
// them from its cache of the last 1,024 packets of each stream. The
// responder budgets resends only when pion's own congestion controller
// hands it a bitrate, which the gateway's estimator (bwe.go) does not: on
// its own it resends whatever it is asked, as often as it is asked. One
// NACK of 4 bytes names up to 17 packets of up to 1,200 bytes, so a
// browser that asks for everything again and again turns the gateway into
// an amplifier aimed at its own uplink.
//
// nackGuard sits between the network and the responder and passes on only
// the lost packets that are worth resending and fit a budget:
//   - per stream, at most nackRate NACK messages a second (a token
//     bucket of nackBurst);
//   - each packet at most once per resendInterval, and none sent more than
//     resendMaxAge ago (a frame that late is no use to a decoder);
//   - per peer, resends over any resendWindow add at most resendShare of
//     the media sent to the browser in that window, and never more than
//     that share of the estimated bitrate toward it, with resendFloor
//     bytes always allowed so that a low-rate stream can still repair a
//     key frame.
//
// What it refuses is counted by reason (NACKStats). Audio is never
// resent: its streams do not negotiate NACK, so the responder keeps no
// cache of them, and NACKs naming them stop here.
const (
	resendShare    = 0.15
	resendFloor    = 12_000
	resendWindow   = time.Second
	resendInterval = 100 * time.Millisecond
	resendMaxAge   = time.Second
	nackRate       = 100
	nackBurst      = 50
	// sentLogSize matches the responder's cache: a packet the guard no
	// longer knows is one the responder no longer has.
	sentLogSize = 1024
	// echoWindow: pion delivers a compound RTCP packet to the reader of
	// every stream it names, so one NACK arrives once per stream of the
	// browser's receiver report. A copy of the same bytes within this
	// window is that echo and is dropped without being counted.
	echoWindow = 20 * time.Millisecond
	echoSlots  = 8
)

// Reasons a lost packet a browser asked for is not resent; they label
// NACKStats.Refused and the gateway's metric.
const (
	// RefusedRate: the stream's NACK messages came faster than nackRate.
	RefusedRate = "rate"
	// RefusedBudget: the peer's retransmission budget was spent.
	RefusedBudget = "budget"
	// RefusedRepeat: the packet was resent less than resendInterval ago.
	RefusedRepeat = "repeat"
	// RefusedUnavailable: the packet is not in the cache, or too old.
	RefusedUnavailable = "unavailable"
	// RefusedNoStream: no stream that answers NACKs has that SSRC (audio,
	// or an SSRC the gateway never sent).
	RefusedNoStream = "no_stream"
)

var refusedReasons = [...]string{RefusedRate, RefusedBudget, RefusedRepeat, RefusedUnavailable, RefusedNoStream}

const (
	refusedRate = iota
	refusedBudget
	refusedRepeat
	refusedUnavailable
	refusedNoStream
)

// NACKStats counts the lost packets browsers asked the gateway to resend
// and what became of them.
type NACKStats struct {
	// Requested counts the lost packets named in NACKs.
	Requested uint64
	// Resent and ResentBytes count the packets passed on to be resent.
	Resent      uint64
	ResentBytes uint64
	// Refused counts the packets not resent, by reason (RefusedRate,
	// RefusedBudget, RefusedRepeat, RefusedUnavailable, RefusedNoStream).
	Refused map[string]uint64
}

// nackCounters is what NACKStats reads; the guard of a peer adds to the
// peer's and to the Engine's.
type nackCounters struct {
	requested   atomic.Uint64
	resent      atomic.Uint64
	resentBytes atomic.Uint64
	refused     [len(refusedReasons)]atomic.Uint64
}

func (c *nackCounters) stats() NACKStats {
	s := NACKStats{Requested: c.requested.Load(), Resent: c.resent.Load(), ResentBytes: c.resentBytes.Load(),
		Refused: make(map[string]uint64, len(refusedReasons))}
	for i, r := range refusedReasons {
		s.Refused[r] = c.refused[i].Load()
	}
	return s
}

// NACKStats returns what every peer of the Engine was asked to resend and
// what it did, since the Engine was made.
func (e *Engine) NACKStats() NACKStats { return e.bwe.nacks.stats() }

// NACKStats returns what the browser asked this peer to resend and what
// it did.
func (p *Peer) NACKStats() NACKStats {
	if p.nack == nil {
		return NACKStats{Refused: map[string]uint64{}}
	}
	return p.nack.own.stats()
}

// byteWindow sums bytes over the last resendWindow, in slots.
type byteWindow struct {
	bytes [windowSlots]int64
	slot  [windowSlots]int64 // the slot number (time / slotLength) each entry holds
}

const (
	windowSlots = 10
	slotLength  = int64(resendWindow / windowSlots)
)

func (w *byteWindow) add(now int64, n int) {
	s := now / slotLength
	i := s % windowSlots
	if w.slot[i] != s {
		w.slot[i], w.bytes[i] = s, 0
	}
	w.bytes[i] += int64(n)
}

func (w *byteWindow) sum(now int64) int64 {
	s := now / slotLength
	var total int64
	for i := range w.bytes {
		if d := s - w.slot[i]; d >= 0 && d < windowSlots {
			total += w.bytes[i]
		}
	}
	return total
}

// sentPacket is what the guard remembers of a packet sent on a stream.
type sentPacket struct {
	at     int64 // unix nanoseconds, first sent
	resent int64 // unix nanoseconds, last passed on to be resent; 0 never
	size   int32
	seq    uint16
	ok     bool
}

// sentLog is one stream's sent packets, by sequence number modulo
// sentLogSize, and its NACK token bucket.
type sentLog struct {
	pkts   [sentLogSize]sentPacket
	tokens float64
	filled int64 // unix nanoseconds of the last refill
}

// nackGuard is the interceptor described above; one per peer connection,
// nearest the network in the chain. Its methods are safe for concurrent
// use.
type nackGuard struct {
	interceptor.NoOp
	// target returns the estimated bitrate toward the browser, bit/s;
	// nil or 0 leaves the budget to the media sent.
	target func() int
	now    func() time.Time
	// own counts for this peer, all for the Engine (may be nil).
	own nackCounters
	all *nackCounters
	// seed hashes compound packets to recognise echoes.
	seed maphash.Seed

	mu      sync.Mutex
	streams map[uint32]*sentLog
	media   byteWindow
	resends byteWindow
	echoes  [echoSlots]struct {
		sum uint64
		at  int64
	}
	nextEcho int
}

func newNACKGuard(target func() int, all *nackCounters) *nackGuard {
	return &nackGuard{target: target, now: time.Now, all: all, seed: maphash.MakeSeed(), streams: map[uint32]*sentLog{}}
}

// supportsNACK reports whether a stream negotiated generic NACK, which is
// when pion's responder caches it.
func supportsNACK(info *interceptor.StreamInfo) bool {
	for _, fb := range info.RTCPFeedback {
		if fb.Type == "nack" && fb.Parameter == "" {
			return true
		}
	}
	return false
}

// BindLocalStream implements interceptor.Interceptor: it notes the size
// and time of each packet of a stream that answers NACKs, and how much
// media goes to the browser.
func (g *nackGuard) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	if !supportsNACK(info) {
		return writer
	}
	log := &sentLog{tokens: nackBurst}
	g.mu.Lock()
	g.streams[info.SSRC] = log
	g.mu.Unlock()
	ssrc := info.SSRC
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if h.SSRC == ssrc {
			g.sent(log, h.SequenceNumber, h.MarshalSize()+len(payload))
		}
		return writer.Write(h, payload, a)
	})
}

// sent records a packet going out. A sequence number already in the log
// is a resend (ours, or the source browser's passing through), not new
// media.
func (g *nackGuard) sent(log *sentLog, seq uint16, size int) {
	now := g.now().UnixNano()
	g.mu.Lock()
	defer g.mu.Unlock()
	p := &log.pkts[seq%sentLogSize]
	if p.ok && p.seq == seq {
		return
	}
	*p = sentPacket{at: now, size: int32(size), seq: seq, ok: true}
	g.media.add(now, size)
}

// UnbindLocalStream implements interceptor.Interceptor.
func (g *nackGuard) UnbindLocalStream(info *interceptor.StreamInfo) {
	g.mu.Lock()
	delete(g.streams, info.SSRC)
	g.mu.Unlock()
}

// BindRTCPReader implements interceptor.Interceptor: the NACKs of each
// compound packet read are cut down to the lost packets that may be
// resent; a packet left with nothing is skipped, and the next one read.
func (g *nackGuard) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			n, attr, err := reader.Read(b, a)
			if err != nil {
				return n, attr, err
			}
			if m, ok := g.filter(b, n); ok {
				return m, attr, nil
			}
		}
	})
}

// filter rewrites the compound packet b[:n] in place and returns its new
// length, or false when nothing is left of it. Packets it cannot parse go
// on untouched, for the readers after it to reject.
func (g *nackGuard) filter(b []byte, n int) (int, bool) {
	pkts, err := rtcp.Unmarshal(b[:n])
	if err != nil {
		return n, true
	}
	hasNACK := false
	for _, p := range pkts {
		if _, ok := p.(*rtcp.TransportLayerNack); ok {
			hasNACK = true
			break
		}
	}
	if !hasNACK {
		return n, true
	}
	echo := g.echo(b[:n])
	var target int
	if g.target != nil && !echo {
		// Read before taking mu: the estimator's own lock may be held
		// while a packet goes through our writer.
		target = g.target()
	}
	kept := pkts[:0]
	for _, p := range pkts {
		nack, ok := p.(*rtcp.TransportLayerNack)
		if !ok {
			kept = append(kept, p)
			continue
		}
		if echo {
			continue
		}
		if cut := g.answer(nack, target); cut != nil {
			kept = append(kept, cut)
		}
	}
	if len(kept) == 0 {
		return 0, false
	}
	out, err := rtcp.Marshal(kept)
	if err != nil || len(out) > len(b) {
		return 0, false
	}
	return copy(b, out), true
}

// echo reports whether the same compound packet was read within
// echoWindow, and remembers this one.
func (g *nackGuard) echo(raw []byte) bool {
	sum := maphash.Bytes(g.seed, raw)
	now := g.now().UnixNano()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, e := range g.echoes {
		if e.sum == sum && e.at != 0 && now-e.at < int64(echoWindow) {
			return true
		}
	}
	g.echoes[g.nextEcho] = struct {
		sum uint64
		at  int64
	}{sum, now}
	g.nextEcho = (g.nextEcho + 1) % echoSlots
	return false
}

// answer decides, packet by packet, what of nack is resent, and returns a
// NACK of those (never longer than nack), or nil. target is the estimated
// bitrate toward the browser (0: unknown).
func (g *nackGuard) answer(nack *rtcp.TransportLayerNack, target int) *rtcp.TransportLayerNack {
	now := g.now().UnixNano()
	var asked uint64
	for i := range nack.Nacks {
		nack.Nacks[i].Range(func(uint16) bool { asked++; return true })
	}
	g.count(asked, 0, 0)

	g.mu.Lock()
	defer g.mu.Unlock()
	log := g.streams[nack.MediaSSRC]
	if log == nil {
		g.refuse(refusedNoStream, asked)
		return nil
	}
	log.tokens = min(nackBurst, log.tokens+float64(now-log.filled)*nackRate/float64(time.Second))
	log.filled = now
	if log.tokens < 1 {
		g.refuse(refusedRate, asked)
		return nil
	}
	log.tokens--

	budget := g.budgetLocked(now, target)
	spent := g.resends.sum(now)
	var refused [len(refusedReasons)]uint64
	var resent, resentBytes uint64
	var pairs []rtcp.NackPair
	for _, pair := range nack.Nacks {
		// The packets kept from one pair fit one pair: they lie within
		// 16 of the first of them.
		var out rtcp.NackPair
		started := false
		pair.Range(func(seq uint16) bool {
			p := &log.pkts[seq%sentLogSize]
			switch {
			case !p.ok || p.seq != seq || now-p.at > int64(resendMaxAge):
				refused[refusedUnavailable]++
			case p.resent != 0 && now-p.resent < int64(resendInterval):
				refused[refusedRepeat]++
			case spent+int64(p.size) > budget:
				refused[refusedBudget]++
			default:
				p.resent = now
				spent += int64(p.size)
				g.resends.add(now, int(p.size))
				resent++
				resentBytes += uint64(p.size)
				if !started {
					out, started = rtcp.NackPair{PacketID: seq}, true
				} else {
					out.LostPackets |= 1 << (seq - out.PacketID - 1)
				}
			}
			return true
		})
		if started {
			pairs = append(pairs, out)
		}
	}
	for i, n := range refused {
		g.refuse(i, n)
	}
	g.count(0, resent, resentBytes)
	if len(pairs) == 0 {
		return nil
	}
	return &rtcp.TransportLayerNack{SenderSSRC: nack.SenderSSRC, MediaSSRC: nack.MediaSSRC, Nacks: pairs}
}

// budgetLocked is how many bytes of resends the window may hold: a share
// of the media sent in it, and of the estimate if there is one, but at
// least the floor.
func (g *nackGuard) budgetLocked(now int64, target int) int64 {
	b := float64(g.media.sum(now))
	if target > 0 {
		b = min(b, float64(target)/8*resendWindow.Seconds())
	}
	return max(int64(b*resendShare), resendFloor)
}

// count adds to the counters of this peer and of the Engine.
func (g *nackGuard) count(requested, resent, resentBytes uint64) {
	for _, c := range [...]*nackCounters{&g.own, g.all} {
		if c != nil {
			c.requested.Add(requested)
			c.resent.Add(resent)
			c.resentBytes.Add(resentBytes)
		}
	}
}

// refuse counts n lost packets refused for reason.
func (g *nackGuard) refuse(reason int, n uint64) {
	if n == 0 {
		return
	}
	g.own.refused[reason].Add(n)
	if g.all != nil {
		g.all.refused[reason].Add(n)
	}
}
