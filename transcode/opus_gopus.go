package transcode

import (
	"fmt"
	"math"
	"time"

	"github.com/thesyncim/gopus"
)

// GoOpus returns the pure Go implementation of Opus
// (github.com/thesyncim/gopus).
func GoOpus() OpusCodec { return goOpus{} }

type goOpus struct{}

func (goOpus) Name() string { return "gopus" }

func (goOpus) NewEncoder(rate int, cfg OpusConfig) (OpusFrameEncoder, error) {
	if err := checkOpusRate(rate); err != nil {
		return nil, err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: rate, Channels: 1, Application: gopus.ApplicationVoIP})
	if err != nil {
		return nil, fmt.Errorf("transcode: gopus encoder: %w", err)
	}
	if err := enc.SetFrameSize(int(int64(rate) * int64(cfg.Frame) / 1e9)); err != nil {
		return nil, fmt.Errorf("transcode: gopus frame %s: %w", cfg.Frame, err)
	}
	if err := enc.SetBitrate(cfg.Bitrate); err != nil {
		return nil, fmt.Errorf("transcode: gopus bitrate: %w", err)
	}
	if err := enc.SetComplexity(cfg.Complexity); err != nil {
		return nil, fmt.Errorf("transcode: gopus complexity: %w", err)
	}
	if err := enc.SetPacketLoss(cfg.PacketLoss); err != nil {
		return nil, fmt.Errorf("transcode: gopus packet loss: %w", err)
	}
	if err := enc.SetSignal(gopus.SignalVoice); err != nil {
		return nil, fmt.Errorf("transcode: gopus signal: %w", err)
	}
	enc.SetFEC(cfg.FEC)
	enc.SetDTX(cfg.DTX)
	return &goOpusEncoder{enc: enc}, nil
}

// SetEffort sets gopus's controls, which take effect from the next frame
// as libopus's do (SILK sets up LBRR at packet boundaries).
func (e *goOpusEncoder) SetEffort(eff OpusEffort) error {
	if err := eff.check(); err != nil {
		return err
	}
	if err := e.enc.SetComplexity(eff.Complexity); err != nil {
		return fmt.Errorf("transcode: gopus complexity: %w", err)
	}
	if err := e.enc.SetPacketLoss(eff.PacketLoss); err != nil {
		return fmt.Errorf("transcode: gopus packet loss: %w", err)
	}
	e.enc.SetFEC(eff.FEC)
	return nil
}

func (goOpus) NewDecoder(rate int) (OpusFrameDecoder, error) {
	if err := checkOpusRate(rate); err != nil {
		return nil, err
	}
	// gopus sizes its scratch buffers for the largest packet at 48 kHz
	// (120 ms, 5,760 samples) unless told otherwise; at 8 kHz the largest
	// packet decodes to 960 samples, and the buffers sized for it save
	// about 57 KiB per call. A packet that would decode to more is not
	// Opus (RFC 6716 §3.2.5) and is refused as too large.
	cfg := gopus.DefaultDecoderConfig(rate, 1)
	cfg.MaxPacketSamples = rate * int(opusMaxDuration/time.Millisecond) / 1000
	dec, err := gopus.NewDecoder(cfg)
	if err != nil {
		return nil, fmt.Errorf("transcode: gopus decoder: %w", err)
	}
	return &goOpusDecoder{dec: dec, fec: make([]float32, rate*int(opusMaxDuration.Milliseconds())/1000)}, nil
}

type goOpusEncoder struct{ enc *gopus.Encoder }

func (e *goOpusEncoder) Encode(pcm []int16, out []byte) (int, error) {
	n, err := e.enc.EncodeInt16(pcm, out)
	if err != nil {
		return 0, fmt.Errorf("transcode: gopus encode: %w", err)
	}
	return n, nil
}

type goOpusDecoder struct {
	dec *gopus.Decoder
	fec []float32
}

func (d *goOpusDecoder) Decode(packet []byte, pcm []int16) (int, error) {
	if len(packet) == 0 {
		return 0, fmt.Errorf("%w: empty opus packet", ErrBadPacket)
	}
	n, err := d.dec.DecodeInt16(packet, pcm)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadPacket, err)
	}
	return n, nil
}

func (d *goOpusDecoder) Conceal(next []byte, pcm []int16) (int, error) {
	if len(next) == 0 || len(pcm) > len(d.fec) {
		n, err := d.dec.DecodeInt16(nil, pcm)
		if err != nil {
			return 0, fmt.Errorf("transcode: gopus concealment: %w", err)
		}
		return n, nil
	}
	f := d.fec[:len(pcm)]
	n, err := d.dec.DecodeWithFEC(next, f, true)
	if err != nil {
		return 0, fmt.Errorf("%w: fec: %w", ErrBadPacket, err)
	}
	for i, v := range f[:n] {
		pcm[i] = floatToInt16(v)
	}
	return n, nil
}

func floatToInt16(v float32) int16 {
	x := math.Round(float64(v) * 32768)
	switch {
	case x > math.MaxInt16:
		return math.MaxInt16
	case x < math.MinInt16:
		return math.MinInt16
	}
	return int16(x)
}
