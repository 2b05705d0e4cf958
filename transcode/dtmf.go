package transcode

import (
	"encoding/binary"
	"fmt"
	"time"
)

// DTMFEventLen is the size of an RFC 4733 named telephone event payload.
const DTMFEventLen = 4

// DTMFEvent is the payload of an RFC 4733 telephone-event packet (§2.3):
// which event, whether it has ended, its volume and its duration so far.
type DTMFEvent struct {
	// Event is the event code; 0-9 are the digits, 10 is *, 11 is #, 12-15
	// are A-D (RFC 4733 §3.2).
	Event uint8
	// End is the E bit, set in the packets that end the event.
	End bool
	// Volume is the power level of the tone in -dBm0, 0 to 63 (§2.3.4).
	Volume uint8
	// Duration is the duration of the event so far, in RTP timestamp units
	// from the event's timestamp (§2.3.5).
	Duration uint16
}

// Marshal returns the 4-byte payload (RFC 4733 §2.3, Figure 1).
func (e DTMFEvent) Marshal() [DTMFEventLen]byte {
	var b [DTMFEventLen]byte
	b[0] = e.Event
	b[1] = e.Volume & 0x3f
	if e.End {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], e.Duration)
	return b
}

// ParseDTMFEvent decodes the payload of a telephone-event packet. Extra
// bytes after the first event (RFC 4733 §2.5.1.5 allows several events
// for redundancy) are ignored; the reserved R bit is ignored as §2.3.3
// requires.
func ParseDTMFEvent(b []byte) (DTMFEvent, error) {
	if len(b) < DTMFEventLen {
		return DTMFEvent{}, fmt.Errorf("transcode: telephone-event payload of %d bytes: %w", len(b), ErrBadPacket)
	}
	return DTMFEvent{
		Event:    b[0],
		End:      b[1]&0x80 != 0,
		Volume:   b[1] & 0x3f,
		Duration: binary.BigEndian.Uint16(b[2:]),
	}, nil
}

const dtmfDigits = "0123456789*#ABCD"

// DTMFCode returns the RFC 4733 §3.2 event code of a DTMF digit (0-9, *,
// #, A-D; lower-case a-d too).
func DTMFCode(digit rune) (uint8, error) {
	if digit >= 'a' && digit <= 'd' {
		digit -= 'a' - 'A'
	}
	for i, d := range dtmfDigits {
		if d == digit {
			return uint8(i), nil
		}
	}
	return 0, fmt.Errorf("transcode: digit %q: %w", digit, ErrUnknownDigit)
}

// DTMFDigit returns the digit of an RFC 4733 §3.2 event code.
func DTMFDigit(code uint8) (rune, error) {
	if int(code) >= len(dtmfDigits) {
		return 0, fmt.Errorf("transcode: event code %d: %w", code, ErrUnknownDigit)
	}
	return rune(dtmfDigits[code]), nil
}

// DTMFPacket is one telephone-event packet to send: the RTP marker bit,
// the RTP timestamp and the payload.
type DTMFPacket struct {
	Marker    bool
	Timestamp uint32
	Event     DTMFEvent
}

// Payload returns the 4-byte RTP payload of p.
func (p DTMFPacket) Payload() [DTMFEventLen]byte { return p.Event.Marshal() }

// DTMFSender produces the telephone-event packets for digits, one packet
// per call to Next, which the leg makes every interval (its ptime). For a
// digit it yields (RFC 4733 §2.5.1):
//   - a first packet with the marker bit, the event's timestamp and the
//     duration of one interval (§2.5.1.2);
//   - a packet per interval with the same timestamp and a growing duration;
//   - three packets with the E bit and the final duration (§2.5.1.4).
//
// An event longer than the 16-bit duration field allows is split into
// segments, each with its own timestamp and no marker (§2.5.1.3). The RTP
// sequence number of each packet is the leg's to assign, one per packet.
// A DTMFSender is not safe for concurrent use.
type DTMFSender struct {
	clock    int
	interval uint32
	volume   uint8

	busy     bool
	event    uint8
	ts       uint32 // timestamp of the current segment
	segStart uint32 // elapsed units at the start of the segment
	elapsed  uint32 // units of the event sent so far
	total    uint32 // units the event lasts
	started  bool
	ends     int // end packets sent
}

// NewDTMFSender returns a sender for a stream at clockRate (8000 for a
// G.711 leg) that sends a packet every interval (usually 20 ms) at volume
// -dBm0 (10 is customary; 0-63).
func NewDTMFSender(clockRate int, interval time.Duration, volume int) (*DTMFSender, error) {
	iv := int64(clockRate) * int64(interval) / int64(time.Second)
	if clockRate <= 0 || iv <= 0 || iv > 0xffff || volume < 0 || volume > 63 {
		return nil, fmt.Errorf("transcode: dtmf sender at %d Hz every %s, volume %d: %w", clockRate, interval, volume, ErrBadConfig)
	}
	return &DTMFSender{clock: clockRate, interval: uint32(iv), volume: uint8(volume)}, nil
}

// Start begins sending digit for duration (at least one interval), with
// timestamp as the RTP timestamp of the event: the media timestamp at the
// moment the key was pressed (§2.5.1.1). It returns ErrBusy while the
// previous digit is still being sent.
func (s *DTMFSender) Start(digit rune, duration time.Duration, timestamp uint32) error {
	if s.busy {
		return ErrBusy
	}
	code, err := DTMFCode(digit)
	if err != nil {
		return err
	}
	total := max(uint64(s.interval), uint64(int64(s.clock)*int64(duration)/int64(time.Second)))
	*s = DTMFSender{clock: s.clock, interval: s.interval, volume: s.volume,
		busy: true, event: code, ts: timestamp, total: uint32(min(total, 1<<31))}
	return nil
}

// Busy reports whether a digit is being sent.
func (s *DTMFSender) Busy() bool { return s.busy }

// Next returns the packet to send for this interval, and false when no
// digit is being sent.
func (s *DTMFSender) Next() (DTMFPacket, bool) {
	if !s.busy {
		return DTMFPacket{}, false
	}
	if s.elapsed >= s.total {
		// §2.5.1.4: the final packet is sent three times.
		s.ends++
		if s.ends >= 3 {
			s.busy = false
		}
		return DTMFPacket{Timestamp: s.ts, Event: s.payload(true)}, true
	}
	s.elapsed = min(s.elapsed+s.interval, s.total)
	if s.elapsed-s.segStart > 0xffff {
		// §2.5.1.3: close the full segment and start a new one.
		s.segStart += 0xffff
		s.ts += 0xffff
	}
	p := DTMFPacket{Marker: !s.started, Timestamp: s.ts, Event: s.payload(false)}
	s.started = true
	return p, true
}

func (s *DTMFSender) payload(end bool) DTMFEvent {
	return DTMFEvent{Event: s.event, End: end, Volume: s.volume, Duration: uint16(s.elapsed - s.segStart)}
}

// DTMFReceiver turns received telephone-event packets into digits, each
// reported once however many packets (continuations, the three ends,
// retransmissions) carry it. It is not safe for concurrent use.
type DTMFReceiver struct {
	have     bool
	lastTS   uint32
	lastCode uint8
}

// Receive takes the RTP timestamp and payload of a telephone-event packet
// and returns the digit when the packet starts an event not seen before
// (RFC 4733 §2.5.2.1 identifies an event by its timestamp). Events that
// are not DTMF digits are ignored.
func (r *DTMFReceiver) Receive(timestamp uint32, payload []byte) (digit rune, ok bool, err error) {
	e, err := ParseDTMFEvent(payload)
	if err != nil {
		return 0, false, err
	}
	if r.have && r.lastTS == timestamp && r.lastCode == e.Event {
		return 0, false, nil
	}
	// The continuation of an event split into segments (§2.5.1.3) has a
	// new timestamp but follows the previous one by at most 0xffff.
	if r.have && r.lastCode == e.Event && timestamp-r.lastTS == 0xffff {
		r.lastTS = timestamp
		return 0, false, nil
	}
	d, derr := DTMFDigit(e.Event)
	if derr != nil {
		return 0, false, nil
	}
	r.have, r.lastTS, r.lastCode = true, timestamp, e.Event
	return d, true, nil
}
