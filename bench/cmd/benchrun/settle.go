package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// settleIdle is the share of processor time that must be idle, over one
// second, before a row starts.
const settleIdle = 0.9

// settle readies the machine for a row, the same for semprop and its
// peers: it writes back the dirty pages of earlier work (sync(2)), so that
// the kernel's writeback does not take a processor in the middle of the
// row, then waits up to limit for a second in which the processors were
// at least settleIdle idle (time stolen by the host counts as busy). It
// returns how long it waited and the idle share of the last second.
func settle(limit time.Duration) (time.Duration, float64) {
	start := time.Now()
	syscall.Sync()
	idle := 0.0
	for {
		a, okA := cpuTimes()
		time.Sleep(time.Second)
		b, okB := cpuTimes()
		if !okA || !okB {
			return time.Since(start), -1 // no /proc/stat: nothing to wait for
		}
		if total := b.total - a.total; total > 0 {
			idle = float64(b.idle-a.idle) / float64(total)
		}
		if idle >= settleIdle || time.Since(start) >= limit {
			return time.Since(start), idle
		}
	}
}

type cpuStat struct{ idle, total uint64 }

// cpuTimes reads the machine's processor times (all processors) from
// /proc/stat: idle counts idle and iowait.
func cpuTimes() (cpuStat, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuStat{}, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return cpuStat{}, false
	}
	var s cpuStat
	for i, v := range f[1:] {
		if i >= 8 { // guest times are already counted in user
			break
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return cpuStat{}, false
		}
		s.total += n
		if i == 3 || i == 4 { // idle, iowait
			s.idle += n
		}
	}
	return s, true
}

// settleNote says how the row started, for its notes.
func settleNote(waited time.Duration, idle float64) string {
	if idle < 0 {
		return fmt.Sprintf("started after sync(2) (%v); processor idleness not readable", waited.Round(100*time.Millisecond))
	}
	s := fmt.Sprintf("started after sync(2) and %v of waiting for an idle second: processors %.0f%% idle in the last one", waited.Round(100*time.Millisecond), 100*idle)
	if idle < settleIdle {
		s += fmt.Sprintf(" (below the %.0f%% waited for: the row ran on a busy machine)", 100*settleIdle)
	}
	return s
}
