package transcode

import (
	"fmt"
	"math"

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

func (goOpus) NewDecoder(rate int) (OpusFrameDecoder, error) {
	if err := checkOpusRate(rate); err != nil {
		return nil, err
	}
	dec, err := gopus.NewDecoder(gopus.DefaultDecoderConfig(rate, 1))
	if err != nil {
		return nil, fmt.Errorf("transcode: gopus decoder: %w", err)
	}
	return &goOpusDecoder{dec: dec, fec: make([]float32, rate*int(opusMaxDuration.Milliseconds())/1000)}, nil
}

type goOpusEncoder struct{ enc *gopus.Encoder }

func (e *goOpusEncoder) Encode(pcm []int16, out []byte) (int, error) {
	return e.enc.EncodeInt16(pcm, out)
}

type goOpusDecoder struct {
	dec *gopus.Decoder
	fec []float32
}

func (d *goOpusDecoder) Decode(packet []byte, pcm []int16) (int, error) {
	if len(packet) == 0 {
		return 0, fmt.Errorf("empty opus packet: %w", ErrBadPacket)
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
