// Package nanoclock reads the clocks with one clock_gettime where
// time.Now makes two (the wall clock and the monotonic clock). On a KVM
// guest (kvm-clock) each read costs about 50 ns: time.Now's pair, taken
// three or four times, was a fifth of an unbatched publish.
package nanoclock

import (
	"sync/atomic"
	"time"
	_ "unsafe" // go:linkname
)

// Mono returns the runtime's monotonic clock in nanoseconds, from an
// arbitrary origin: the clock time.Since measures with.
//
// The runtime keeps this name for packages outside it (go.dev/issue/67401).
//
//go:linkname Mono runtime.nanotime
func Mono() int64

// anchor pairs a wall clock reading with the monotonic reading taken with
// it.
type anchor struct{ wall, mono int64 }

var current atomic.Pointer[anchor]

// Reanchor is how long Wall derives the wall clock from the monotonic one
// before it reads the wall clock again: the longest a step of the wall
// clock (settimeofday, an NTP step) goes unseen. Between reads the two
// clocks run at the same rate (NTP slews both).
const Reanchor = time.Second

// Wall returns the wall clock in Unix nanoseconds, from one monotonic
// read: the last wall clock reading (at most Reanchor old) plus the
// monotonic time since.
func Wall() int64 { return WallAt(Mono()) }

// WallAt returns the wall clock in Unix nanoseconds at mono, a Mono
// reading the caller has just taken: one read serves a duration's start
// and a timestamp.
func WallAt(mono int64) int64 {
	a := current.Load()
	if a == nil || mono-a.mono >= int64(Reanchor) {
		a = newAnchor()
		current.Store(a)
	}
	return a.wall + (mono - a.mono)
}

// Now is Wall as a time.Time (without a monotonic reading).
func Now() time.Time { return time.Unix(0, Wall()) }

func newAnchor() *anchor {
	m0 := Mono()
	w := time.Now().UnixNano()
	m1 := Mono()
	return &anchor{wall: w, mono: m0 + (m1-m0)/2}
}
