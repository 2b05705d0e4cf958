package demophone

import "errors"

// ErrNotLoopback is returned by Config.Validate when listen is not a
// loopback address: the demo phone answers anyone who reaches it, so it
// must not be reachable from another machine.
var ErrNotLoopback = errors.New("demophone: listen must be a loopback address (127.0.0.1 or ::1)")

// ErrGreeting is returned when the greeting is neither "chime", "none" nor
// a readable WAV file.
var ErrGreeting = errors.New("demophone: greeting must be chime, none or a WAV file")
