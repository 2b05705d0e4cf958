package transcode

import "errors"

// ErrRateMismatch is returned when a stage is connected to a writer of
// another sample rate than it needs.
var ErrRateMismatch = errors.New("transcode: sample rate mismatch")

// ErrClosed is returned by writes to a closed stage.
var ErrClosed = errors.New("transcode: writer closed")
