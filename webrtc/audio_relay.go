package webrtc

import (
	"github.com/pion/rtp"
)

// relayYield is how many media ticks (20 ms each) relayed packets give way
// after the destination peer sent a frame of its own (AudioIn, SendDTMF),
// so that the two never interleave.
const relayYield = 3

// relayMaxJump is the distance, in sequence numbers, beyond which a
// relayed packet is not taken as reordering or loss: ahead, it starts a
// new source stream, and the mapping onto the destination's stream is
// made again; behind, it is dropped, unless relayLateRestart of them in a
// row show that the source moved its sequence numbers back.
const (
	relayMaxJump     = 100
	relayLateRestart = 8
)

// relayAnchor maps the source browser's stream onto the destination
// peer's own audio track: sequence numbers and timestamps are the
// source's plus an offset chosen when relaying starts, so that they carry
// on from what the track sent before, and the source's gaps and
// reordering reach the destination browser as they are. Guarded by
// txState.mu.
type relayAnchor struct {
	on     bool   // the last packet on the track was relayed
	ssrc   uint32 // the source stream the offsets were chosen for
	seqOff uint16 // added to the source's sequence numbers
	tsOff  uint32 // added to the source's timestamps
	first  uint16 // the first sequence number sent since then, or one relayMaxJump behind the next
	behind int    // packets in a row too far behind the stream
}

// RelayAudioTo relays the browser's audio to dst's browser without
// decoding it, as an SFU does, for audio that goes from one browser to
// another: each Opus packet goes out on dst's own audio track with its
// payload untouched, in dst's stream (dst's SSRC and payload type, its
// sequence numbers and timestamps carried on from what it sent before),
// so that dst's browser hears one continuous stream whether its audio is
// relayed or comes from dst's AudioIn. Both are on the 48 kHz Opus clock,
// so the full band the browser sends reaches the other one.
//
// Packets are relayed only while both browsers negotiated Opus. Otherwise
// (G.711 on either side, or dst's audio not negotiated yet) they are
// decoded to the writer set with SwapAudioOut as usual, so the caller
// keeps that path wired too, to dst.AudioIn, as the fallback. Audio that
// dst plays of its own (written to its AudioIn, or SendDTMF tones) comes
// first: relayed packets are dropped while it plays and for 60 ms after,
// and never go to the fallback meanwhile. Relayed packets still count in
// Stats and AudioFlowing on both peers (Inbound.Relayed on p,
// Outbound.Relayed on dst). Telephone-events are not relayed: they still
// go to OnDTMF.
//
// A nil dst stops relaying; the browser's packets are decoded again from
// the next one. A peer cannot relay to itself (ErrRelayToSelf), and
// setting a dst that has ended returns ErrClosed. Safe for concurrent
// use; the per-packet path does not allocate.
func (p *Peer) RelayAudioTo(dst *Peer) error {
	switch {
	case dst == p:
		return ErrRelayToSelf
	case dst != nil && (dst.ctx.Err() != nil || p.ctx.Err() != nil):
		return ErrClosed
	}
	if old := p.relayTo.Swap(dst); old != dst {
		if dst == nil {
			p.log.Info("webrtc audio relay stopped")
		} else {
			p.log.Info("webrtc audio relay", "to", dst.opts.Name)
		}
	}
	return nil
}

// relay hands pkt, a packet of the browser's audio in the codec of rx, to
// the peer set with RelayAudioTo, and reports whether it took it (sent or
// dropped); when it did not, the caller decodes the packet. It runs on
// the audio reader goroutine, which owns rx.relaying.
func (p *Peer) relay(rx *rxState, pkt *rtp.Packet) bool {
	dst := p.relayTo.Load()
	var tx *txState
	if dst != nil && rx.codec == "opus" {
		tx = dst.tx.Load()
	}
	if tx == nil || tx.codec != "opus" {
		rx.relaying = false
		return false
	}
	if !rx.relaying {
		// What waits in the jitter buffer would reach dst too late,
		// after the packets relayed now.
		rx.relaying = true
		rx.jitter.Reset()
	}
	if dst.relayIn(tx, pkt) {
		p.rxStats.relayed.Add(1)
	}
	return true
}

// relayIn sends pkt, relayed from another browser, on the peer's audio
// track bound as tx, and reports whether it did.
func (p *Peer) relayIn(tx *txState, pkt *rtp.Packet) bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.running && tx.idle < relayYield {
		return false // the peer's own audio plays
	}
	// From here the relay carries the stream: no silence padding.
	tx.running = false
	a := &tx.relay
	if !a.on || pkt.SSRC != a.ssrc {
		tx.anchor(pkt)
	} else if d := int16(pkt.SequenceNumber + a.seqOff - tx.seq); d > relayMaxJump {
		tx.anchor(pkt)
	} else if d < -relayMaxJump {
		if a.behind++; a.behind < relayLateRestart {
			return false
		}
		tx.anchor(pkt)
	}
	a.behind = 0
	seq := pkt.SequenceNumber + a.seqOff
	if int16(seq-a.first) < 0 {
		return false // older than the switch to relaying: reordered across it
	}
	ts := pkt.Timestamp + a.tsOff
	h := tx.header(pkt.Marker || tx.marker, seq, ts)
	tx.marker = false
	if int16(seq-tx.seq) >= 0 {
		tx.seq = seq + 1
		// Keep first within reach of int16 comparisons on long streams.
		if int16(tx.seq-a.first) > relayMaxJump {
			a.first = tx.seq - relayMaxJump
		}
	}
	if !tx.sent || int32(ts-tx.lastTS) > 0 {
		tx.lastTS = ts
	}
	tx.sent = true
	n, err := tx.w.WriteRTP(h, pkt.Payload)
	if err != nil {
		p.txStats.errors.Add(1)
		return false
	}
	p.txStats.packets.Add(1)
	p.txStats.bytes.Add(uint64(n))
	p.txStats.relayed.Add(1)
	return true
}

// anchor maps the stream of pkt onto the track from now: its sequence
// numbers follow the last one sent, its timestamps start at the current
// media tick and after the last one sent, and the packet carries the
// marker bit so that the browser's jitter buffer takes it as a new talk
// spurt (RFC 3551 §4.1). tx.mu is held.
func (tx *txState) anchor(pkt *rtp.Packet) {
	ts := tx.ts
	if tx.sent && int32(ts-(tx.lastTS+tx.step)) < 0 {
		ts = tx.lastTS + tx.step
	}
	tx.relay = relayAnchor{
		on:     true,
		ssrc:   pkt.SSRC,
		seqOff: tx.seq - pkt.SequenceNumber,
		tsOff:  ts - pkt.Timestamp,
		first:  tx.seq,
	}
	tx.marker = true
}

// endRelay is called before the peer sends a frame of its own: after
// relayed packets, its timestamps carry on after theirs. tx.mu is held.
func (tx *txState) endRelay() {
	if !tx.relay.on {
		return
	}
	tx.relay.on = false
	if int32(tx.ts-(tx.lastTS+tx.step)) < 0 {
		tx.ts = tx.lastTS + tx.step
	}
	tx.marker = true
}
