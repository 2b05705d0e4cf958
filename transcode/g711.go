package transcode

import (
	"fmt"

	"github.com/zaf/g711"
)

// g711Encoder turns 8 kHz PCM into G.711 payloads, using the per-sample
// functions of zaf/g711 and one reused buffer (no allocation per frame).
type g711Encoder struct {
	dst  BytesWriter
	name string
	enc  func(int16) uint8
	buf  []byte
}

// NewULawEncoder returns a PCM writer that encodes to PCMU into dst, which
// must run at 8 kHz.
func NewULawEncoder(dst BytesWriter) (PCMWriter, error) {
	return newG711Encoder(dst, "PCMU", g711.EncodeUlawFrame)
}

// NewALawEncoder returns a PCM writer that encodes to PCMA into dst, which
// must run at 8 kHz.
func NewALawEncoder(dst BytesWriter) (PCMWriter, error) {
	return newG711Encoder(dst, "PCMA", g711.EncodeAlawFrame)
}

func newG711Encoder(dst BytesWriter, name string, enc func(int16) uint8) (PCMWriter, error) {
	if dst.SampleRate() != 8000 {
		return nil, fmt.Errorf("%s encoder into %s at %d Hz: %w", name, dst, dst.SampleRate(), ErrRateMismatch)
	}
	return &g711Encoder{dst: dst, name: name, enc: enc}, nil
}

func (e *g711Encoder) WriteSample(s PCM16) error {
	if cap(e.buf) < len(s) {
		e.buf = make([]byte, len(s))
	}
	b := e.buf[:len(s)]
	for i, v := range s {
		b[i] = e.enc(v)
	}
	return e.dst.WriteSample(b)
}

func (e *g711Encoder) SampleRate() int { return 8000 }
func (e *g711Encoder) String() string  { return e.name + "(encode) -> " + e.dst.String() }
func (e *g711Encoder) Close() error    { return e.dst.Close() }

// g711Decoder turns G.711 payloads into 8 kHz PCM and conceals lost
// packets (see plc).
type g711Decoder struct {
	dst  PCMWriter
	name string
	dec  func(uint8) int16
	buf  PCM16
	last int
	plc  plc
}

// NewULawDecoder returns a writer of PCMU payloads that decodes into dst,
// which must run at 8 kHz. The writer is a Concealer: an empty payload, or
// a call to Conceal, stands for a lost packet and writes a concealment
// frame as long as the last packet (waveform repetition after ITU-T G.711
// Appendix I).
func NewULawDecoder(dst PCMWriter) (BytesWriter, error) {
	return newG711Decoder(dst, "PCMU", g711.DecodeUlawFrame)
}

// NewALawDecoder returns a writer of PCMA payloads that decodes into dst,
// which must run at 8 kHz. Like NewULawDecoder, it conceals lost packets.
func NewALawDecoder(dst PCMWriter) (BytesWriter, error) {
	return newG711Decoder(dst, "PCMA", g711.DecodeAlawFrame)
}

func newG711Decoder(dst PCMWriter, name string, dec func(uint8) int16) (BytesWriter, error) {
	if dst.SampleRate() != 8000 {
		return nil, fmt.Errorf("%s decoder into %s at %d Hz: %w", name, dst, dst.SampleRate(), ErrRateMismatch)
	}
	return &g711Decoder{dst: dst, name: name, dec: dec, buf: make(PCM16, 160), last: 160}, nil
}

func (d *g711Decoder) WriteSample(p []byte) error {
	if len(p) == 0 {
		return d.Conceal(nil)
	}
	if cap(d.buf) < len(p) {
		d.buf = make(PCM16, len(p))
	}
	s := d.buf[:len(p)]
	for i, v := range p {
		s[i] = d.dec(v)
	}
	d.last = len(p)
	d.plc.good(s)
	return d.dst.WriteSample(s)
}

// Conceal writes one concealment frame for a lost packet. G.711 carries no
// redundancy, so next is not used.
func (d *g711Decoder) Conceal([]byte) error {
	s := d.buf[:d.last]
	d.plc.conceal(s)
	return d.dst.WriteSample(s)
}

func (d *g711Decoder) SampleRate() int { return 8000 }
func (d *g711Decoder) String() string  { return d.name + "(decode) -> " + d.dst.String() }
func (d *g711Decoder) Close() error    { return d.dst.Close() }
