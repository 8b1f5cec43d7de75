package cputime

import (
	"time"

	"golang.org/x/sys/unix"
)

// Thread returns the CPU time (user and system) the calling OS thread has
// used, or 0 if it cannot be read: unlike the wall clock, it does not
// count the time other work held the core. The caller locks itself to its
// thread (runtime.LockOSThread) for the figure to mean one goroutine's
// work. It reads CLOCK_THREAD_CPUTIME_ID, which counts in nanoseconds
// (getrusage counts in scheduler ticks: a short interval reads 0 or a
// whole tick).
func Thread() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
