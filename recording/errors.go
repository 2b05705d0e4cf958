package recording

import "errors"

// ErrFormat is returned by New for a file format other than FormatOgg and
// FormatWAV.
var ErrFormat = errors.New("recording: unknown format")

// ErrClosed is returned by writes and ticks after Close.
var ErrClosed = errors.New("recording: closed")

// ErrCorrupt is returned by Read for a file that is not a recording this
// package wrote, or is damaged.
var ErrCorrupt = errors.New("recording: corrupt file")
