//go:build unix

package gateway

import (
	"syscall"
	"time"
)

// processCPUTime is the user and system CPU time of the whole process so
// far, from getrusage(2).
func processCPUTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
