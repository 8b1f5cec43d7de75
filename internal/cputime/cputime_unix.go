//go:build unix

// Package cputime measures the CPU time this process (Now) or the calling
// thread (Thread, on Linux) has used, for benchmarks on a machine shared
// with other work, where CPU time per operation is a steadier figure than
// wall time. It is safe for concurrent use.
package cputime

import (
	"syscall"
	"testing"
	"time"
)

// Now returns the CPU time (user and system) this process has used, or 0
// if it cannot be read.
func Now() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Report reports the CPU time per iteration since start (a value of Now)
// as the metric cpu-ns/op.
func Report(b *testing.B, start time.Duration) {
	if b.N > 0 && start > 0 {
		b.ReportMetric(float64(Now()-start)/float64(b.N), "cpu-ns/op")
	}
}
