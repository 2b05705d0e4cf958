//go:build !unix

package gateway

import "time"

// processCPUTime is unknown on this platform: limits.max_cpu_percent
// admits every call here.
func processCPUTime() (time.Duration, bool) { return 0, false }
