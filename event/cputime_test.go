//go:build unix

package event

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time (user and system, every thread, the collector's
// included) the process used so far: on a shared machine it moves less
// than the wall clock that ns/op reads.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
