package fusefs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"

	"github.com/semprop/semprop/internal/capture"
)

// TestCopyOverhead measures copying the Go source tree ($GOROOT/src) with
// `cp -r` (a child process) into this file system and into a plain go-fuse
// loopback (fs.NewLoopbackRoot, same mount options), in both passthrough
// modes, alternating the two, and reports the medians. It is slow, so it
// runs only with SEMPROP_FUSE_BENCH=1:
//
//	SEMPROP_FUSE_BENCH=1 go test -run TestCopyOverhead -v -timeout 30m ./internal/capture/fusefs/
//
// SEMPROP_FUSE_BENCH_REPS sets the repetitions (default 3);
// SEMPROP_FUSE_BENCH_DIR the directory that holds the backing trees (default
// a t.TempDir; e.g. a tmpfs, to take the disk out of the measurement);
// SEMPROP_FUSE_BENCH_STRICT=1 fails when the wall-time overhead exceeds 10%.
//
// Besides wall time it reports CPU time (user+sys of cp plus of this
// process, which serves the mount), which a loaded machine disturbs less.
func TestCopyOverhead(t *testing.T) {
	if os.Getenv("SEMPROP_FUSE_BENCH") != "1" {
		t.Skip("set SEMPROP_FUSE_BENCH=1 to run the copy benchmark")
	}
	requireFUSE(t)
	reps := 3
	if v, err := strconv.Atoi(os.Getenv("SEMPROP_FUSE_BENCH_REPS")); err == nil && v > 0 {
		reps = v
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	src := filepath.Join(strings.TrimSpace(string(goroot)), "src")
	for _, mode := range passthroughModes {
		t.Run(mode.name, func(t *testing.T) {
			var plain, ours, plainCPU, oursCPU []time.Duration
			var ops atomic.Int64
			for i := range reps {
				kinds := []bool{false, true}
				if i%2 == 1 {
					slices.Reverse(kinds)
				}
				for _, hooked := range kinds {
					d, cpu := copyOnce(t, src, mode.on, hooked, &ops)
					if hooked {
						ours, oursCPU = append(ours, d), append(oursCPU, cpu)
					} else {
						plain, plainCPU = append(plain, d), append(plainCPU, cpu)
					}
				}
			}
			mp, mo := median(plain), median(ours)
			ratio := float64(mo) / float64(mp)
			cp, co := median(plainCPU), median(oursCPU)
			t.Logf("cp -r %s, %s, %d reps, ops emitted per copy %d", src, mode.name, reps, ops.Load()/int64(reps))
			t.Logf("  wall: plain go-fuse loopback median %v %v; semprop fusefs median %v %v; ratio %.3f",
				mp.Round(time.Millisecond), rounded(plain), mo.Round(time.Millisecond), rounded(ours), ratio)
			t.Logf("  cpu:  plain go-fuse loopback median %v %v; semprop fusefs median %v %v; ratio %.3f",
				cp.Round(time.Millisecond), rounded(plainCPU), co.Round(time.Millisecond), rounded(oursCPU), float64(co)/float64(cp))
			if os.Getenv("SEMPROP_FUSE_BENCH_STRICT") == "1" && ratio > 1.10 {
				t.Errorf("overhead %.1f%% > 10%%", (ratio-1)*100)
			}
		})
	}
}

func copyOnce(t *testing.T, src string, passthrough, hooked bool, ops *atomic.Int64) (wall, cpu time.Duration) {
	t.Helper()
	backing, mnt := t.TempDir(), t.TempDir()
	if dir := os.Getenv("SEMPROP_FUSE_BENCH_DIR"); dir != "" {
		var err error
		if backing, err = os.MkdirTemp(dir, "backing-"); err != nil {
			t.Fatal(err)
		}
	}
	var unmount func()
	if hooked {
		sink := capture.SinkFunc(func(*capture.Op) { ops.Add(1) })
		f, err := Mount(Options{Backing: backing, Mountpoint: mnt, Sink: sink, Passthrough: passthrough, Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("Mount: %v", err)
		}
		if f.Passthrough() != passthrough {
			t.Fatalf("Passthrough() = %v, want %v", f.Passthrough(), passthrough)
		}
		unmount = func() { unmountT(t, f) }
	} else {
		root, err := fs.NewLoopbackRoot(backing)
		if err != nil {
			t.Fatal(err)
		}
		et, at, neg := DefaultEntryTimeout, DefaultAttrTimeout, time.Duration(0)
		server, err := fs.Mount(mnt, root, &fs.Options{MountOptions: MountOptions(passthrough, false, nil),
			EntryTimeout: &et, AttrTimeout: &at, NegativeTimeout: &neg})
		if err != nil {
			t.Fatalf("plain mount: %v", err)
		}
		unmount = func() {
			if err := server.Unmount(); err != nil {
				t.Errorf("plain unmount: %v", err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "cp", "-r", src, filepath.Join(mnt, "src"))
	self0 := selfCPU()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall = time.Since(start)
	cpu = selfCPU() - self0
	unmount()
	if err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if err := os.RemoveAll(backing); err != nil {
		t.Fatal(err)
	}
	return wall, cpu
}

// selfCPU is the user+sys time of this process so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func rounded(ds []time.Duration) string {
	s := "["
	for i, d := range ds {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprint(d.Round(time.Millisecond))
	}
	return s + "]"
}
