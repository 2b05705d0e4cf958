package transcode

import "errors"

// ErrRateMismatch is returned when a stage is connected to a writer of
// another sample rate than it needs.
var ErrRateMismatch = errors.New("transcode: sample rate mismatch")

// ErrClosed is returned by writes to a closed stage.
var ErrClosed = errors.New("transcode: writer closed")

// ErrFrameSize is returned when a stage that needs fixed frames (an Opus
// encoder) receives a frame of another length. Put Frames in front of it.
var ErrFrameSize = errors.New("transcode: wrong frame size")

// ErrUnsupportedRate is returned for a sample rate a stage cannot work at,
// such as an Opus decoder asked for 44.1 kHz or a resampler for a ratio it
// does not support.
var ErrUnsupportedRate = errors.New("transcode: unsupported sample rate")

// ErrBadPacket is returned when an encoded payload (Opus, RFC 4733) cannot
// be decoded. The stage stays usable: the caller may conceal the frame and
// go on with the next packet.
var ErrBadPacket = errors.New("transcode: malformed packet")

// ErrCodecPanic is returned when a codec library panicked on its input. The
// panic is recovered and the stage stays failed (every later write returns
// this error), so that the caller ends that leg only and never the process.
var ErrCodecPanic = errors.New("transcode: codec panic")

// ErrBadConfig is returned by constructors given options out of range.
var ErrBadConfig = errors.New("transcode: invalid configuration")

// ErrUnknownDigit is returned for a DTMF digit outside 0-9, *, #, A-D, or
// an RFC 4733 event code that is not a DTMF digit.
var ErrUnknownDigit = errors.New("transcode: unknown dtmf digit")

// ErrBusy is returned by DTMFSender.Start while a digit is still being sent.
var ErrBusy = errors.New("transcode: dtmf sender busy")
