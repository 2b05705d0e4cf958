package webrtc

import (
	"sync/atomic"
	"time"

	"github.com/segue-rtc/segue/transcode"
)

// Stats describes a peer's audio in both directions, for call records and
// the console's live quality display.
type Stats struct {
	// Codec is the negotiated audio codec: "opus", "PCMU" or "PCMA".
	Codec string
	// Inbound is the browser's audio as received by the gateway.
	Inbound StreamStats
	// Outbound is the gateway's audio toward the browser; loss and jitter
	// are those the browser reports in RTCP receiver reports.
	Outbound StreamStats
	// RTT is the round-trip time to the browser, from its receiver
	// reports on our audio (RFC 3550 §6.4.1); 0 until known.
	RTT time.Duration
	// Flowing reports whether audio arrived in the last second.
	Flowing bool
	// State is the connection state.
	State State
}

// StreamStats counts one direction of audio.
type StreamStats struct {
	Packets uint64
	Bytes   uint64
	// Lost is the cumulative number of packets lost (RFC 3550 §6.4.1).
	Lost int64
	// FractionLost is the share of packets lost, 0 to 1: over the last
	// report interval for Outbound, over the whole call for Inbound.
	FractionLost float64
	// Jitter is the RFC 3550 interarrival jitter.
	Jitter time.Duration
	// Concealed counts frames the decoder had to conceal (Inbound only).
	Concealed uint64
	// Recovered counts, among Concealed, the frames an Opus decoder
	// rebuilt from the in-band FEC of the packet after the lost one; the
	// rest were extrapolated by loss concealment (Inbound only).
	Recovered uint64
	// Malformed counts packets that could not be parsed or decoded
	// (Inbound), or frames that failed to send (Outbound).
	Malformed uint64
	// Dropped counts frames discarded to keep the delay bounded.
	Dropped uint64
	// Skipped counts frames the gateway did not send (Outbound only)
	// because its media clock stalled for longer than it catches up on
	// (mediaclock.MaxBurst frames). The RTP timestamp still advances over
	// them, so the browser hears a gap rather than squeezed time.
	Skipped uint64
	// Relayed counts the packets among Packets relayed untouched between
	// two browsers (RelayAudioTo): for Inbound, the browser's packets
	// relayed to another peer instead of decoded; for Outbound, the
	// packets relayed to this browser from another peer.
	Relayed uint64
	// Gaps counts the silences of at least MinMediaGap between two
	// packets in a row (Inbound only): a network change, a path that
	// broke until ICE restarted, a stalled sender. LongestGap is the
	// longest such silence. A silence after the last packet is not one:
	// only a stream that resumes has a gap.
	Gaps       uint64
	LongestGap time.Duration
	// Encoded counts the frames the gateway's Opus encoder coded
	// (Outbound only), and FEC those among them coded with in-band FEC
	// turned on. EffortSwitches counts the encoder's changes between its
	// cheap effort and FEC with opus_complexity: auto.
	Encoded        uint64
	FEC            uint64
	EffortSwitches uint64
}

type rxCounters struct {
	packets   atomic.Uint64
	bytes     atomic.Uint64
	lost      atomic.Int64
	malformed atomic.Uint64
	outErrors atomic.Uint64
	relayed   atomic.Uint64
	last      atomic.Int64 // unix nanoseconds of the last packet
	gaps      atomic.Uint64
	longest   atomic.Int64 // nanoseconds: the longest gap
	// final is the jitter buffer's and the decoder's counters of the
	// last receive chain, kept when its read loop ends (the peer
	// closed): a call record written after the peer is released still
	// reads them.
	final atomic.Pointer[rxFinal]
}

// rxFinal is what a receive chain counted, kept after it ends.
type rxFinal struct {
	jitter  transcode.JitterStats
	conceal transcode.ConcealStats
}

// counts returns the current counters of the receive chain rx.
func (rx *rxState) counts() *rxFinal {
	f := &rxFinal{jitter: rx.jitter.Stats()}
	if c, ok := rx.dec.(transcode.ConcealCounter); ok {
		f.conceal = c.ConcealStats()
	}
	return f
}

// MinMediaGap is the shortest silence between two packets of the
// browser's audio that counts as a gap in Stats: a dozen 20 ms packets
// missing in a row, more than any jitter the buffer absorbs, and
// noticeable to a listener.
const MinMediaGap = 250 * time.Millisecond

// arrived records that a packet arrived at now: it moves the last arrival
// on and counts the silence before it as a gap when it lasted at least
// MinMediaGap.
func (c *rxCounters) arrived(now time.Time) {
	n := now.UnixNano()
	prev := c.last.Swap(n)
	d := n - prev
	if prev == 0 || d < int64(MinMediaGap) {
		return
	}
	c.gaps.Add(1)
	for {
		old := c.longest.Load()
		if d <= old || c.longest.CompareAndSwap(old, d) {
			return
		}
	}
}

type txCounters struct {
	packets      atomic.Uint64
	bytes        atomic.Uint64
	errors       atomic.Uint64
	lost         atomic.Int64
	fractionLost atomic.Uint32 // in 1/256
	jitter       atomic.Int64  // nanoseconds
	rtt          atomic.Int64  // nanoseconds
	relayed      atomic.Uint64
	skipped      atomic.Uint64
}

// Stats returns the current counters.
func (p *Peer) Stats() Stats {
	s := Stats{
		Codec:   p.AudioCodec(),
		Flowing: p.AudioFlowing(),
		State:   p.State(),
		RTT:     time.Duration(p.txStats.rtt.Load()),
		Inbound: StreamStats{
			Packets:   p.rxStats.packets.Load(),
			Bytes:     p.rxStats.bytes.Load(),
			Lost:      p.rxStats.lost.Load(),
			Malformed: p.rxStats.malformed.Load(),
			Relayed:   p.rxStats.relayed.Load(),
		},
		Outbound: StreamStats{
			Packets:      p.txStats.packets.Load(),
			Bytes:        p.txStats.bytes.Load(),
			Lost:         p.txStats.lost.Load(),
			FractionLost: float64(p.txStats.fractionLost.Load()) / 256,
			Jitter:       time.Duration(p.txStats.jitter.Load()),
			Malformed:    p.txStats.errors.Load(),
			Dropped:      p.in.dropped.Load(),
			Relayed:      p.txStats.relayed.Load(),
			Skipped:      p.txStats.skipped.Load(),
		},
	}
	if p.effort != nil {
		s.Outbound.Encoded, s.Outbound.FEC = p.effort.Frames()
	}
	s.Outbound.EffortSwitches = p.effortSwitches.Load()
	if expected := int64(s.Inbound.Packets) + s.Inbound.Lost; expected > 0 {
		s.Inbound.FractionLost = float64(s.Inbound.Lost) / float64(expected)
	}
	f := p.rxStats.final.Load()
	if rx := p.rx.Load(); rx != nil {
		f = rx.counts()
	}
	if f != nil {
		s.Inbound.Jitter = f.jitter.Jitter
		s.Inbound.Concealed = f.jitter.Concealed
		s.Inbound.Recovered = f.conceal.FEC
		s.Inbound.Dropped = f.jitter.Dropped + f.jitter.Late
	}
	s.Inbound.Gaps, s.Inbound.LongestGap = p.rxStats.gaps.Load(), time.Duration(p.rxStats.longest.Load())
	return s
}
