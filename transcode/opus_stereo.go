package transcode

import (
	"fmt"

	"github.com/thesyncim/gopus"
)

// StereoOpusEncoder encodes two-channel PCM (interleaved left, right) into
// Opus packets of one 20 ms frame, for files rather than calls: a call
// recording keeps the customer on the left and the phone on the right.
// It always uses the pure Go implementation, whatever the build, since
// recordings are written at a modest rate and must decode the same way
// everywhere. It is not safe for concurrent use.
type StereoOpusEncoder struct {
	enc   *gopus.Encoder
	rate  int
	frame int
}

// NewStereoOpusEncoder returns an encoder of interleaved stereo PCM at rate
// (8, 12, 16, 24 or 48 kHz) to bitrate bits per second (6000-510000).
func NewStereoOpusEncoder(rate, bitrate int) (*StereoOpusEncoder, error) {
	if err := checkOpusRate(rate); err != nil {
		return nil, err
	}
	if bitrate < 6000 || bitrate > 510000 {
		return nil, fmt.Errorf("transcode: opus bitrate %d outside 6000-510000: %w", bitrate, ErrBadConfig)
	}
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: rate, Channels: 2, Application: gopus.ApplicationAudio})
	if err != nil {
		return nil, fmt.Errorf("transcode: gopus stereo encoder: %w", err)
	}
	frame := rate / 50
	if err := enc.SetFrameSize(frame); err != nil {
		return nil, fmt.Errorf("transcode: gopus stereo frame: %w", err)
	}
	if err := enc.SetBitrate(bitrate); err != nil {
		return nil, fmt.Errorf("transcode: gopus stereo bitrate: %w", err)
	}
	// Two unrelated voices: keep both channels whole rather than let the
	// encoder narrow the image to save bits.
	if err := enc.SetForceChannels(2); err != nil {
		return nil, fmt.Errorf("transcode: gopus stereo channels: %w", err)
	}
	return &StereoOpusEncoder{enc: enc, rate: rate, frame: frame}, nil
}

// FrameSamples is the number of samples per channel that Encode takes.
func (e *StereoOpusEncoder) FrameSamples() int { return e.frame }

// Lookahead is the encoder's delay in samples at 48 kHz, the pre-skip an
// Ogg Opus header announces (RFC 7845 §4.2).
func (e *StereoOpusEncoder) Lookahead() int { return e.enc.Lookahead() * OpusClockRate / e.rate }

// Encode encodes one frame, FrameSamples per channel interleaved, into out
// and returns the packet length.
func (e *StereoOpusEncoder) Encode(pcm []int16, out []byte) (int, error) {
	if len(pcm) != 2*e.frame {
		return 0, fmt.Errorf("transcode: stereo opus frame of %d samples, want %d: %w", len(pcm), 2*e.frame, ErrFrameSize)
	}
	return safeCall(func() (int, error) {
		n, err := e.enc.EncodeInt16(pcm, out)
		if err != nil {
			return 0, fmt.Errorf("transcode: gopus stereo encode: %w", err)
		}
		return n, nil
	})
}

// StereoOpusDecoder decodes Opus packets to interleaved stereo PCM (a mono
// packet comes out on both channels). It is not safe for concurrent use.
type StereoOpusDecoder struct{ dec *gopus.Decoder }

// NewStereoOpusDecoder returns a decoder to interleaved stereo PCM at rate.
func NewStereoOpusDecoder(rate int) (*StereoOpusDecoder, error) {
	if err := checkOpusRate(rate); err != nil {
		return nil, err
	}
	dec, err := gopus.NewDecoder(gopus.DefaultDecoderConfig(rate, 2))
	if err != nil {
		return nil, fmt.Errorf("transcode: gopus stereo decoder: %w", err)
	}
	return &StereoOpusDecoder{dec: dec}, nil
}

// Decode decodes packet into pcm, which must have room for 120 ms of both
// channels, and returns the samples written per channel.
func (d *StereoOpusDecoder) Decode(packet []byte, pcm []int16) (int, error) {
	if len(packet) == 0 {
		return 0, fmt.Errorf("%w: empty opus packet", ErrBadPacket)
	}
	return safeCall(func() (int, error) {
		n, err := d.dec.DecodeInt16(packet, pcm)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", ErrBadPacket, err)
		}
		return n, nil
	})
}
