package transcode

import (
	"fmt"
	"sync/atomic"
	"time"
)

// OpusClockRate is the RTP clock rate of Opus. It is 48 kHz whatever the
// audio bandwidth actually coded (RFC 7587 §4.1), so timestamps of Opus
// packets always advance by 960 per 20 ms.
const OpusClockRate = 48000

// OpusNarrowbandFmtp holds the SDP fmtp parameters (RFC 7587 §6.1) that ask
// the browser to send, and announce that we send, audio band-limited to
// 8 kHz sampling. The gateway decodes browser Opus straight to 8 kHz and
// encodes from 8 kHz PCM, so no resampler sits on the voice path. Add
// "useinbandfec=1" (which browsers offer by default) so that the browser's
// packets carry the in-band FEC that OpusDecoder can use after a loss.
const OpusNarrowbandFmtp = "maxplaybackrate=8000;sprop-maxcapturerate=8000"

// opusMaxPacket is the largest Opus packet we produce or accept: 1275 bytes
// is the most one frame can take (RFC 6716 §3.2.1), and a code 3 packet of
// several frames stays below 1500 for the bitrates used in calls.
const opusMaxPacket = 1500

// opusMaxDuration is the longest audio one Opus packet holds (RFC 6716 §3.2.5).
const opusMaxDuration = 120 * time.Millisecond

// OpusFrameEncoder is one Opus implementation's encoder of mono 16-bit PCM.
// It is not safe for concurrent use.
type OpusFrameEncoder interface {
	// Encode encodes pcm, exactly one frame (10, 20, 40 or 60 ms at the
	// encoder's rate), into out and returns the packet length.
	Encode(pcm []int16, out []byte) (int, error)
	// SetEffort changes the complexity, in-band FEC and expected loss
	// from the next frame on, keeping the encoder's state: the stream
	// goes on without a break. It must not allocate.
	SetEffort(e OpusEffort) error
}

// OpusFrameDecoder is one Opus implementation's decoder to mono 16-bit PCM.
// It is not safe for concurrent use.
type OpusFrameDecoder interface {
	// Decode decodes packet into pcm and returns the number of samples
	// written. pcm must have room for 120 ms at the decoder's rate.
	Decode(packet []byte, pcm []int16) (int, error)
	// Conceal fills pcm, whose length is the duration of the missing packet,
	// for a packet that was lost. If next is the packet that follows the
	// lost one and carries in-band FEC (LBRR, RFC 6716 §4.2.4), the lost
	// audio is decoded from it; otherwise, and when next is nil, the
	// decoder's packet loss concealment extrapolates it. next is not
	// consumed: it is decoded again normally when its turn comes.
	Conceal(next []byte, pcm []int16) (int, error)
}

// OpusCodec is an implementation of Opus. GoOpus (pure Go) is always
// available; LibOpus (cgo over libopus) exists in builds with the libopus
// tag. Both pass the same tests.
type OpusCodec interface {
	// Name identifies the implementation in logs and benchmarks.
	Name() string
	// NewEncoder returns an encoder of mono PCM at rate (8, 12, 16, 24 or
	// 48 kHz) configured by cfg.
	NewEncoder(rate int, cfg OpusConfig) (OpusFrameEncoder, error)
	// NewDecoder returns a decoder to mono PCM at rate (8, 12, 16, 24 or
	// 48 kHz), whatever rate the packets were coded at.
	NewDecoder(rate int) (OpusFrameDecoder, error)
}

// OpusConfig configures an Opus encoder. The zero value gives the defaults
// the gateway uses toward browsers.
type OpusConfig struct {
	// Codec is the implementation; nil means DefaultOpus().
	Codec OpusCodec
	// Bitrate is the target in bits per second; 0 means 20000, which is
	// already transparent for narrowband speech coming from G.711.
	Bitrate int
	// Complexity is the encoder's effort from 1 to 10; 0 means 5.
	Complexity int
	// Frame is the duration of each packet; 0 means 20 ms. The encoder
	// stage takes frames of exactly this duration (use Frames before it).
	Frame time.Duration
	// FEC turns on in-band forward error correction (RFC 6716 §2.1.7).
	FEC bool
	// PacketLoss is the expected loss in percent that FEC is tuned for.
	PacketLoss int
	// DTX turns on discontinuous transmission during silence.
	DTX bool
	// Control, when set, overrides Complexity, FEC and PacketLoss with
	// its effort, from the first frame on, and changes them while the
	// stage runs (NewOpusEncoder; OpusCodec.NewEncoder ignores it).
	Control *OpusEffortControl
}

// OpusEffort is the part of an encoder's configuration that can change
// during a stream: how hard it works and how much it protects against
// loss.
type OpusEffort struct {
	// Complexity is from 1 to 10.
	Complexity int
	// FEC turns on in-band forward error correction (RFC 6716 §2.1.7).
	// Neither implementation codes any below complexity 2.
	FEC bool
	// PacketLoss is the expected loss in percent, 0 to 100.
	PacketLoss int
}

// CodesFEC reports whether frames encoded at e carry in-band FEC: FEC is
// on, the complexity is 2 or more and some loss is expected (the encoder
// codes none for 0 %).
func (e OpusEffort) CodesFEC() bool { return e.FEC && e.Complexity >= 2 && e.PacketLoss > 0 }

func (e OpusEffort) check() error {
	switch {
	case e.Complexity < 1 || e.Complexity > 10:
		return fmt.Errorf("transcode: opus complexity %d outside 1-10: %w", e.Complexity, ErrBadConfig)
	case e.PacketLoss < 0 || e.PacketLoss > 100:
		return fmt.Errorf("transcode: opus packet loss %d%% outside 0-100: %w", e.PacketLoss, ErrBadConfig)
	}
	return nil
}

// pack puts e in one word: complexity in bits 0-3, FEC in bit 4, packet
// loss in bits 8-14, and bit 31 set so that no effort packs to 0.
func (e OpusEffort) pack() uint32 {
	v := uint32(e.Complexity)&0xf | uint32(e.PacketLoss)&0x7f<<8 | 1<<31
	if e.FEC {
		v |= 1 << 4
	}
	return v
}

func unpackEffort(v uint32) OpusEffort {
	return OpusEffort{Complexity: int(v & 0xf), FEC: v&(1<<4) != 0, PacketLoss: int(v >> 8 & 0x7f)}
}

// OpusEffortControl changes the effort of running Opus encoder stages:
// Set may be called from any goroutine, and each stage configured with
// the control (OpusConfig.Control) reads it before its next frame and
// reconfigures its encoder when it changed, without a lock and without
// allocating. The zero value is not ready: use NewOpusEffortControl.
type OpusEffortControl struct {
	v   atomic.Uint32
	fec atomic.Uint64
	all atomic.Uint64
}

// NewOpusEffortControl returns a control that starts at e.
func NewOpusEffortControl(e OpusEffort) (*OpusEffortControl, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	c := &OpusEffortControl{}
	c.v.Store(e.pack())
	return c, nil
}

// Set makes e the effort of the stages' next frames; an invalid effort
// returns an error wrapping ErrBadConfig and changes nothing.
func (c *OpusEffortControl) Set(e OpusEffort) error {
	if err := e.check(); err != nil {
		return err
	}
	c.v.Store(e.pack())
	return nil
}

// Effort returns the effort last set.
func (c *OpusEffortControl) Effort() OpusEffort { return unpackEffort(c.v.Load()) }

// Frames returns how many frames the stages reading c have encoded, and
// how many of them with FEC turned on.
func (c *OpusEffortControl) Frames() (all, fec uint64) { return c.all.Load(), c.fec.Load() }

func (c OpusConfig) withDefaults() (OpusConfig, error) {
	if c.Codec == nil {
		c.Codec = DefaultOpus()
	}
	if c.Bitrate == 0 {
		c.Bitrate = 20000
	}
	if c.Complexity == 0 {
		c.Complexity = 5
	}
	if c.Frame == 0 {
		c.Frame = 20 * time.Millisecond
	}
	switch {
	case c.Bitrate < 6000 || c.Bitrate > 510000:
		return c, fmt.Errorf("transcode: opus bitrate %d outside 6000-510000: %w", c.Bitrate, ErrBadConfig)
	case c.Complexity < 1 || c.Complexity > 10:
		return c, fmt.Errorf("transcode: opus complexity %d outside 1-10: %w", c.Complexity, ErrBadConfig)
	case c.PacketLoss < 0 || c.PacketLoss > 100:
		return c, fmt.Errorf("transcode: opus packet loss %d%% outside 0-100: %w", c.PacketLoss, ErrBadConfig)
	}
	switch c.Frame {
	case 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 60 * time.Millisecond:
	default:
		return c, fmt.Errorf("transcode: opus frame %s not 10, 20, 40 or 60 ms: %w", c.Frame, ErrBadConfig)
	}
	return c, nil
}

func checkOpusRate(rate int) error {
	switch rate {
	case 8000, 12000, 16000, 24000, 48000:
		return nil
	}
	return fmt.Errorf("transcode: opus at %d Hz: %w", rate, ErrUnsupportedRate)
}

// OpusCodecs lists the Opus implementations compiled into this build,
// DefaultOpus first.
func OpusCodecs() []OpusCodec {
	if lib := libOpus(); lib != nil {
		return []OpusCodec{lib, GoOpus()}
	}
	return []OpusCodec{GoOpus()}
}

// DefaultOpus returns the implementation stages use when none is given:
// libopus in builds with the libopus tag, gopus otherwise.
func DefaultOpus() OpusCodec { return OpusCodecs()[0] }

// safeCall runs f and turns a panic inside a codec into an error wrapping
// ErrCodecPanic, so that a malformed packet never takes the process down.
func safeCall(f func() (int, error)) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			n, err = 0, fmt.Errorf("%w: %v", ErrCodecPanic, r)
		}
	}()
	return f()
}
