package transcode

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/thesyncim/gopus"
)

// Concealer is implemented by decoder stages that can fill in a lost
// packet: the writers returned by NewOpusDecoder, NewULawDecoder and
// NewALawDecoder. A leg calls Conceal when its jitter buffer reports a
// packet lost, passing the payload of the following packet when the buffer
// already holds it (Opus recovers the lost audio from its in-band FEC) or
// nil. Writing an empty payload to these stages conceals too, without FEC.
type Concealer interface {
	Conceal(next []byte) error
}

// ConcealStats counts how a decoder stage filled in lost packets.
type ConcealStats struct {
	// FEC counts frames recovered from the in-band FEC (LBRR, RFC 6716
	// §4.2.4) that the following packet carried.
	FEC uint64
	// PLC counts frames extrapolated by the decoder's loss concealment:
	// no following packet was at hand, or it carried no FEC.
	PLC uint64
}

// ConcealCounter is implemented by decoder stages that count their
// concealment (OpusDecoder). ConcealStats is safe to call from any
// goroutine while the stage decodes.
type ConcealCounter interface {
	ConcealStats() ConcealStats
}

// Conceal asks w to conceal one lost frame, with next as the following
// payload when known. For a writer that cannot conceal, it does nothing and
// returns nil: the gap is left as it is.
func Conceal(w BytesWriter, next []byte) error {
	if c, ok := w.(Concealer); ok {
		return c.Conceal(next)
	}
	return nil
}

// opusEncoder is the PCM → Opus stage.
type opusEncoder struct {
	enc   OpusFrameEncoder
	dst   BytesWriter
	name  string
	rate  int
	frame int
	out   []byte
	err   error
	// ctl, when set, is read before each frame; applied is the packed
	// effort the encoder has.
	ctl     *OpusEffortControl
	applied uint32
}

// NewOpusEncoder returns a PCM writer at rate that encodes mono frames of
// cfg.Frame (20 ms by default) into Opus payloads written to dst. dst runs
// at the Opus RTP clock, OpusClockRate, and rate is one of 8, 12, 16, 24 or
// 48 kHz; the gateway uses 8 kHz, so that audio from G.711 is never
// resampled. Frames of another length return ErrFrameSize: put Frames in
// front when the source frames differ. With cfg.Control, the effort is
// the control's, and follows it frame by frame on the same encoder: the
// payloads written to dst go on as one stream.
func NewOpusEncoder(dst BytesWriter, rate int, cfg OpusConfig) (PCMWriter, error) {
	if dst.SampleRate() != OpusClockRate {
		return nil, fmt.Errorf("transcode: opus encoder into %s at %d Hz, want %d: %w", dst, dst.SampleRate(), OpusClockRate, ErrRateMismatch)
	}
	if err := checkOpusRate(rate); err != nil {
		return nil, err
	}
	var applied uint32
	if cfg.Control != nil {
		applied = cfg.Control.v.Load()
		eff := unpackEffort(applied)
		cfg.Complexity, cfg.FEC, cfg.PacketLoss = eff.Complexity, eff.FEC, eff.PacketLoss
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	enc, err := cfg.Codec.NewEncoder(rate, cfg)
	if err != nil {
		return nil, err
	}
	return &opusEncoder{
		enc:     enc,
		dst:     dst,
		name:    cfg.Codec.Name(),
		rate:    rate,
		frame:   int(int64(rate) * int64(cfg.Frame) / int64(time.Second)),
		out:     make([]byte, opusMaxPacket),
		ctl:     cfg.Control,
		applied: applied,
	}, nil
}

func (e *opusEncoder) WriteSample(s PCM16) error {
	if e.err != nil {
		return e.err
	}
	if len(s) != e.frame {
		return fmt.Errorf("transcode: opus encoder got %d samples, want %d: %w", len(s), e.frame, ErrFrameSize)
	}
	if e.ctl != nil {
		if v := e.ctl.v.Load(); v != e.applied {
			if err := e.enc.SetEffort(unpackEffort(v)); err != nil {
				return err
			}
			e.applied = v
		}
	}
	n, err := safeCall(func() (int, error) { return e.enc.Encode(s, e.out) })
	if err != nil {
		if errors.Is(err, ErrCodecPanic) {
			e.err = err
		}
		return err
	}
	if e.ctl != nil {
		e.ctl.all.Add(1)
		if unpackEffort(e.applied).CodesFEC() {
			e.ctl.fec.Add(1)
		}
	}
	if n == 0 {
		return nil
	}
	return e.dst.WriteSample(e.out[:n])
}

func (e *opusEncoder) SampleRate() int { return e.rate }
func (e *opusEncoder) Close() error    { return e.dst.Close() }
func (e *opusEncoder) String() string {
	if e.ctl != nil {
		return fmt.Sprintf("Opus(encode %s %dHz, adaptive effort) -> %s", e.name, e.rate, e.dst)
	}
	return fmt.Sprintf("Opus(encode %s %dHz) -> %s", e.name, e.rate, e.dst)
}

// OpusDecoder is the Opus → PCM stage returned by NewOpusDecoder. It takes
// payloads of Opus RTP packets and writes the decoded frames to its
// destination at the destination's rate.
type OpusDecoder struct {
	dec  OpusFrameDecoder
	dst  PCMWriter
	name string
	pcm  []int16
	last int
	err  error
	fec  atomic.Uint64
	plc  atomic.Uint64
}

var (
	_ Concealer      = (*OpusDecoder)(nil)
	_ ConcealCounter = (*OpusDecoder)(nil)
)

// NewOpusDecoder returns a writer of Opus payloads that decodes them with
// DefaultOpus straight to dst's rate (8, 12, 16, 24 or 48 kHz). Its
// SampleRate is the RTP clock, OpusClockRate.
func NewOpusDecoder(dst PCMWriter) (*OpusDecoder, error) {
	return NewOpusDecoderCodec(dst, DefaultOpus())
}

// NewOpusDecoderCodec is NewOpusDecoder with a chosen implementation.
func NewOpusDecoderCodec(dst PCMWriter, codec OpusCodec) (*OpusDecoder, error) {
	rate := dst.SampleRate()
	if err := checkOpusRate(rate); err != nil {
		return nil, err
	}
	dec, err := codec.NewDecoder(rate)
	if err != nil {
		return nil, err
	}
	return &OpusDecoder{
		dec:  dec,
		dst:  dst,
		name: codec.Name(),
		pcm:  make([]int16, rate*int(opusMaxDuration/time.Millisecond)/1000),
		last: rate / 50,
	}, nil
}

// WriteSample decodes one Opus payload. An empty payload stands for a lost
// packet and is concealed. A malformed payload returns an error wrapping
// ErrBadPacket and writes nothing; the decoder stays usable. If the codec
// panics, the error wraps ErrCodecPanic and the stage fails for good.
func (d *OpusDecoder) WriteSample(p []byte) error {
	if len(p) == 0 {
		return d.Conceal(nil)
	}
	if d.err != nil {
		return d.err
	}
	n, err := safeCall(func() (int, error) { return d.dec.Decode(p, d.pcm) })
	if err != nil {
		return d.fail(err)
	}
	if n > 0 {
		d.last = n
	}
	return d.dst.WriteSample(d.pcm[:n])
}

// Conceal writes one frame, as long as the last decoded packet, in place of
// a lost packet. When next, the payload of the packet after the lost one,
// carries in-band FEC, the frame is decoded from it (RFC 6716 §2.1.7);
// otherwise the decoder's loss concealment extrapolates it. Each frame is
// counted in ConcealStats as one or the other.
func (d *OpusDecoder) Conceal(next []byte) error {
	if d.err != nil {
		return d.err
	}
	if !OpusHasFEC(next) {
		next = nil
	}
	n, err := safeCall(func() (int, error) { return d.dec.Conceal(next, d.pcm[:d.last]) })
	if err != nil && next != nil && !errors.Is(err, ErrCodecPanic) {
		next = nil
		n, err = safeCall(func() (int, error) { return d.dec.Conceal(nil, d.pcm[:d.last]) })
	}
	if err != nil {
		return d.fail(err)
	}
	if next != nil {
		d.fec.Add(1)
	} else {
		d.plc.Add(1)
	}
	return d.dst.WriteSample(d.pcm[:n])
}

// ConcealStats returns how many lost frames were recovered from FEC and
// how many extrapolated.
func (d *OpusDecoder) ConcealStats() ConcealStats {
	return ConcealStats{FEC: d.fec.Load(), PLC: d.plc.Load()}
}

// OpusHasFEC reports whether the Opus packet p carries in-band FEC for the
// packet before it: SILK or hybrid mode with the LBRR flag of its first
// frame set (RFC 6716 §4.2.3). CELT-only packets never do; a malformed
// packet does not.
func OpusHasFEC(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	ok := false
	_, _ = safeCall(func() (int, error) { ok = gopus.PacketHasLBRR(p); return 0, nil })
	return ok
}

// fail returns err, and keeps it as the stage's permanent error if the
// codec panicked.
func (d *OpusDecoder) fail(err error) error {
	if errors.Is(err, ErrCodecPanic) {
		d.err = err
	}
	return err
}

// SampleRate returns OpusClockRate, the RTP clock of the payloads it takes.
func (d *OpusDecoder) SampleRate() int { return OpusClockRate }

// Close closes the destination.
func (d *OpusDecoder) Close() error { return d.dst.Close() }

// String describes the chain, e.g. "Opus(decode gopus 8000Hz) -> PCMU(encode) -> RTP".
func (d *OpusDecoder) String() string {
	return fmt.Sprintf("Opus(decode %s %dHz) -> %s", d.name, d.dst.SampleRate(), d.dst)
}
