//go:build libopus

package transcode

import (
	"fmt"

	"gopkg.in/hraban/opus.v2"
)

// LibOpus returns the implementation of Opus over the C library libopus
// (gopkg.in/hraban/opus.v2). It exists only in builds with the libopus tag,
// which need cgo, pkg-config and the libopus headers; add the
// nolibopusfile tag to leave out the Ogg file reader we do not use.
func LibOpus() OpusCodec { return cOpus{} }

func libOpus() OpusCodec { return cOpus{} }

type cOpus struct{}

func (cOpus) Name() string { return "libopus" }

func (cOpus) NewEncoder(rate int, cfg OpusConfig) (OpusFrameEncoder, error) {
	if err := checkOpusRate(rate); err != nil {
		return nil, err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	enc, err := opus.NewEncoder(rate, 1, opus.AppVoIP)
	if err != nil {
		return nil, fmt.Errorf("transcode: libopus encoder: %w", err)
	}
	if err := enc.SetBitrate(cfg.Bitrate); err != nil {
		return nil, fmt.Errorf("transcode: libopus bitrate: %w", err)
	}
	if err := enc.SetComplexity(cfg.Complexity); err != nil {
		return nil, fmt.Errorf("transcode: libopus complexity: %w", err)
	}
	if err := enc.SetInBandFEC(cfg.FEC); err != nil {
		return nil, fmt.Errorf("transcode: libopus fec: %w", err)
	}
	if err := enc.SetPacketLossPerc(cfg.PacketLoss); err != nil {
		return nil, fmt.Errorf("transcode: libopus packet loss: %w", err)
	}
	if err := enc.SetDTX(cfg.DTX); err != nil {
		return nil, fmt.Errorf("transcode: libopus dtx: %w", err)
	}
	return &cOpusEncoder{enc: enc}, nil
}

func (cOpus) NewDecoder(rate int) (OpusFrameDecoder, error) {
	if err := checkOpusRate(rate); err != nil {
		return nil, err
	}
	dec, err := opus.NewDecoder(rate, 1)
	if err != nil {
		return nil, fmt.Errorf("transcode: libopus decoder: %w", err)
	}
	return &cOpusDecoder{dec: dec}, nil
}

type cOpusEncoder struct{ enc *opus.Encoder }

func (e *cOpusEncoder) Encode(pcm []int16, out []byte) (int, error) {
	n, err := e.enc.Encode(pcm, out)
	if err != nil {
		return 0, fmt.Errorf("transcode: libopus encode: %w", err)
	}
	return n, nil
}

// SetEffort sets libopus's controls (OPUS_SET_COMPLEXITY,
// OPUS_SET_INBAND_FEC, OPUS_SET_PACKET_LOSS_PERC), which apply from the
// next frame.
func (e *cOpusEncoder) SetEffort(eff OpusEffort) error {
	if err := eff.check(); err != nil {
		return err
	}
	if err := e.enc.SetComplexity(eff.Complexity); err != nil {
		return fmt.Errorf("transcode: libopus complexity: %w", err)
	}
	if err := e.enc.SetInBandFEC(eff.FEC); err != nil {
		return fmt.Errorf("transcode: libopus fec: %w", err)
	}
	if err := e.enc.SetPacketLossPerc(eff.PacketLoss); err != nil {
		return fmt.Errorf("transcode: libopus packet loss: %w", err)
	}
	return nil
}

type cOpusDecoder struct{ dec *opus.Decoder }

// Decode passes pcm with its capacity cut to its length, because the
// binding tells libopus the room it has from cap(pcm).
func (d *cOpusDecoder) Decode(packet []byte, pcm []int16) (int, error) {
	if len(packet) == 0 {
		return 0, fmt.Errorf("%w: empty opus packet", ErrBadPacket)
	}
	n, err := d.dec.Decode(packet, pcm[:len(pcm):len(pcm)])
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadPacket, err)
	}
	return n, nil
}

func (d *cOpusDecoder) Conceal(next []byte, pcm []int16) (int, error) {
	pcm = pcm[:len(pcm):len(pcm)]
	if len(next) == 0 {
		if err := d.dec.DecodePLC(pcm); err != nil {
			return 0, fmt.Errorf("transcode: libopus concealment: %w", err)
		}
		return len(pcm), nil
	}
	if err := d.dec.DecodeFEC(next, pcm); err != nil {
		return 0, fmt.Errorf("%w: fec: %w", ErrBadPacket, err)
	}
	return len(pcm), nil
}
