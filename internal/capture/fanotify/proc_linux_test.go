package fanotify

import (
	"os"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		in        string
		wantStart uint64
		wantComm  string
		wantOK    bool
	}{
		{"123 (sh) S 1 123 123 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 100 18446744073709551615\n", 98765, "sh", true},
		{"7 (a b) (c)) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0\n", 42, "a b) (c)", true},
		{"7 (x) R 1 2 3\n", 0, "", false},
		{"garbage", 0, "", false},
		{"7 (x) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 NaN 1\n", 0, "", false},
	} {
		start, comm, ok := parseStat([]byte(tc.in))
		if start != tc.wantStart || comm != tc.wantComm || ok != tc.wantOK {
			t.Errorf("parseStat(%q) = %d, %q, %v; want %d, %q, %v", tc.in, start, comm, ok, tc.wantStart, tc.wantComm, tc.wantOK)
		}
	}
}

func TestParseStatusIDs(t *testing.T) {
	in := "Name:\tsh\nUmask:\t0022\nUid:\t1000\t1001\t1001\t1001\nGid:\t50\t51\t51\t51\nFDSize:\t64\n"
	uid, gid, ok := parseStatusIDs([]byte(in))
	if uid != 1001 || gid != 51 || !ok {
		t.Errorf("parseStatusIDs = %d, %d, %v; want 1001, 51, true", uid, gid, ok)
	}
	if _, _, ok := parseStatusIDs([]byte("Name:\tx\nUid:\t1\n")); ok {
		t.Errorf("parseStatusIDs(truncated) ok, want not ok")
	}
}

func TestProcCache(t *testing.T) {
	var c counters
	pc := newProcCache(nil, &c)
	now := time.Now()
	self := pc.lookup(int32(os.Getpid()), now)
	exe, _ := os.Executable()
	if self.comm == "" || self.exe != exe || self.pid != int32(os.Getpid()) || self.uid != uint32(os.Geteuid()) || self.known&event.HasUID == 0 {
		t.Errorf("lookup(self) = %+v, want comm set and exe %q", *self, exe)
	}
	pc.lookup(int32(os.Getpid()), now)
	if c.procHits.Load() != 1 || c.procMisses.Load() != 1 {
		t.Errorf("hits %d misses %d, want 1 and 1", c.procHits.Load(), c.procMisses.Load())
	}
	// A changed start time (pid reuse) is noticed once the entry is due
	// for a recheck.
	pc.m[int32(os.Getpid())].start++
	pc.m[int32(os.Getpid())].a.comm = "stale"
	if a := pc.lookup(int32(os.Getpid()), now.Add(procRecheck)); a.comm == "stale" {
		t.Errorf("pid reuse not detected: comm %q", a.comm)
	}
	// An exited process: pid known, no comm.
	if a := pc.lookup(1<<30, now); a.comm != "" || a.pid != 1<<30 {
		t.Errorf("lookup(gone) = %+v, want pid only", *a)
	}
}
