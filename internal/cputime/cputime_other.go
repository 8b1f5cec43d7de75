//go:build !unix

// Package cputime measures the CPU time this process has used; on this
// platform it cannot, and reports nothing.
package cputime

import (
	"testing"
	"time"
)

// Now returns 0: CPU time is not available here.
func Now() time.Duration { return 0 }

// Report does nothing here.
func Report(*testing.B, time.Duration) {}
