package fusefs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
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
// SEMPROP_FUSE_BENCH_STRICT=1 fails when the overhead exceeds 10%.
func TestCopyOverhead(t *testing.T) {
	if os.Getenv("SEMPROP_FUSE_BENCH") != "1" {
		t.Skip("set SEMPROP_FUSE_BENCH=1 to run the copy benchmark")
	}
	requireFUSE(t)
	reps := 3
	if v, err := strconv.Atoi(os.Getenv("SEMPROP_FUSE_BENCH_REPS")); err == nil && v > 0 {
		reps = v
	}
	src := filepath.Join(runtime.GOROOT(), "src")
	for _, mode := range passthroughModes {
		t.Run(mode.name, func(t *testing.T) {
			var plain, ours []time.Duration
			var ops atomic.Int64
			for i := range reps {
				kinds := []bool{false, true}
				if i%2 == 1 {
					slices.Reverse(kinds)
				}
				for _, hooked := range kinds {
					d := copyOnce(t, src, mode.on, hooked, &ops)
					if hooked {
						ours = append(ours, d)
					} else {
						plain = append(plain, d)
					}
				}
			}
			mp, mo := median(plain), median(ours)
			ratio := float64(mo) / float64(mp)
			t.Logf("cp -r %s, %s, %d reps: plain go-fuse loopback median %v %v; semprop fusefs median %v %v; ratio %.3f; ops emitted per copy %d",
				src, mode.name, reps, mp.Round(time.Millisecond), rounded(plain), mo.Round(time.Millisecond), rounded(ours), ratio, ops.Load()/int64(reps))
			if os.Getenv("SEMPROP_FUSE_BENCH_STRICT") == "1" && ratio > 1.10 {
				t.Errorf("overhead %.1f%% > 10%%", (ratio-1)*100)
			}
		})
	}
}

func copyOnce(t *testing.T, src string, passthrough, hooked bool, ops *atomic.Int64) time.Duration {
	t.Helper()
	backing, mnt := t.TempDir(), t.TempDir()
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
	start := time.Now()
	out, err := exec.CommandContext(ctx, "cp", "-r", src, filepath.Join(mnt, "src")).CombinedOutput()
	d := time.Since(start)
	unmount()
	if err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	if err := os.RemoveAll(backing); err != nil {
		t.Fatal(err)
	}
	return d
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
