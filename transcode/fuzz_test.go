package transcode_test

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// FuzzOpusDecode feeds arbitrary payloads to the Opus decoder stage of
// every implementation, as a browser (or an attacker) may send them. The
// first byte splits the input into up to four packets, so that decoder
// state carries over; each is also offered as the FEC source of a lost
// frame. A payload may fail with ErrBadPacket, or ErrCodecPanic if the
// codec panicked and the stage recovered; nothing may escape as a panic,
// and no write may exceed 120 ms of audio.
func FuzzOpusDecode(f *testing.F) {
	for _, codec := range transcode.OpusCodecs() {
		for _, p := range opusEncode(f, codec, audiotest.Speech(8000, 200*time.Millisecond, 1), transcode.OpusConfig{FEC: true, PacketLoss: 10}) {
			f.Add(append([]byte{0}, p...))
		}
	}
	f.Add([]byte{0x03, 0x0b, 0x00, 0xff, 0xfc})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		parts := int(data[0]%4) + 1
		data = data[1:]
		for _, codec := range transcode.OpusCodecs() {
			rec := &maxFrame{rate: 8000}
			dec, err := transcode.NewOpusDecoderCodec(rec, codec)
			if err != nil {
				t.Fatal(err)
			}
			size := len(data)/parts + 1
			for i := 0; i < len(data); i += size {
				p := data[i:min(i+size, len(data))]
				for _, op := range []func() error{
					func() error { return dec.Conceal(p) },
					func() error { return dec.WriteSample(p) },
				} {
					if err := op(); err != nil && !errors.Is(err, transcode.ErrBadPacket) && !errors.Is(err, transcode.ErrCodecPanic) {
						t.Fatalf("%s: unexpected error %v", codec.Name(), err)
					}
				}
			}
			if rec.max > 960 {
				t.Fatalf("%s: a write of %d samples, more than 120 ms", codec.Name(), rec.max)
			}
		}
	})
}

// jitterRingForTest is more ticks than the jitter buffer can hold packets.
const jitterRingForTest = 256

// maxFrame is a PCM sink that remembers the longest frame written.
type maxFrame struct {
	rate int
	max  int
}

func (m *maxFrame) WriteSample(s transcode.PCM16) error { m.max = max(m.max, len(s)); return nil }
func (m *maxFrame) SampleRate() int                     { return m.rate }
func (m *maxFrame) String() string                      { return "max" }
func (m *maxFrame) Close() error                        { return nil }

// FuzzJitterPush drives a jitter buffer with arbitrary packets and ticks.
// Each 8-byte record of the input is one step: a time advance, an SSRC
// choice, a sequence number, a timestamp, the marker bit and whether to
// pop. The buffer must never panic, must play packets in sequence order
// and never twice, and must never hold more than MaxDelay plus one frame
// after a pop.
func FuzzJitterPush(f *testing.F) {
	var seed []byte
	for i := range 30 {
		seed = binary.BigEndian.AppendUint16(append(seed, 20, 0), uint16(65530+i))
		seed = binary.BigEndian.AppendUint32(seed, uint32(i*160))
	}
	f.Add(seed)
	f.Add([]byte{0, 1, 0xff, 0xff, 0, 0, 0, 0, 200, 0x83, 0, 0, 0x80, 0, 0, 0})
	f.Fuzz(fuzzJitter)
}

// fuzzJitter is the body of FuzzJitterPush.
func fuzzJitter(t *testing.T, data []byte) {
	clock := newFakeClock()
	j, err := transcode.NewJitter(transcode.JitterConfig{ClockRate: 8000, MaxDelay: 100 * time.Millisecond, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	var last *rtp.Packet
	var lastResets uint64
	played := map[*rtp.Packet]bool{}
	for len(data) >= 8 {
		rec := data[:8]
		data = data[8:]
		clock.add(time.Duration(rec[0]) * time.Millisecond)
		flags := rec[1]
		p := &rtp.Packet{Header: rtp.Header{
			SSRC:           uint32(flags & 0x03),
			Marker:         flags&0x80 != 0,
			SequenceNumber: binary.BigEndian.Uint16(rec[2:]),
			Timestamp:      binary.BigEndian.Uint32(rec[4:]),
		}}
		j.Push(p)
		if flags&0x40 != 0 {
			j.Push(p) // the same packet again
		}
		if flags&0x20 == 0 {
			continue
		}
		got, st := j.Pop()
		if (got != nil) != (st == transcode.JitterReady) {
			t.Fatalf("status %s with packet %v", st, got)
		}
		if d := j.Stats().Depth; d > 120*time.Millisecond {
			t.Fatalf("depth %s after a pop", d)
		}
		if got == nil {
			continue
		}
		if played[got] {
			t.Fatalf("packet %d played twice", got.SequenceNumber)
		}
		played[got] = true
		resets := j.Stats().Resets
		if last != nil && resets == lastResets && int16(got.SequenceNumber-last.SequenceNumber) <= 0 {
			t.Fatalf("played %d after %d in the same stream", got.SequenceNumber, last.SequenceNumber)
		}
		last, lastResets = got, resets
	}
	// Drain, then every packet pushed must be accounted for once.
	for range 2 * jitterRingForTest {
		clock.add(20 * time.Millisecond)
		j.Pop()
	}
	st := j.Stats()
	if st.Depth != 0 || st.Played+st.Late+st.Duplicates+st.Dropped != st.Pushed {
		t.Fatalf("after draining: %+v", st)
	}
}
