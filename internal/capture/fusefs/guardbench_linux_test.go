package fusefs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/capture"
	"github.com/semprop/semprop/internal/guard"
)

// guardModes are the sides of the guard benchmarks: no guard, and a guard
// with nobody listed (with or without snapshots before destroy).
func guardOf(b *testing.B, mode string) Guard {
	b.Helper()
	if mode == "off" {
		return nil
	}
	store, err := action.OpenStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	cfg := guard.DefaultConfig()
	cfg.SnapshotBeforeDestroy = mode == "snapshot"
	g, err := guard.New(guard.Options{Config: cfg, Snapshots: store})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }() // flushes the copies every 200ms, as in the daemon
	b.Cleanup(func() { cancel(); <-done })
	return g
}

func mountB(b *testing.B, backing string, g Guard) *FS {
	b.Helper()
	f, err := Mount(Options{Backing: backing, Mountpoint: b.TempDir(), Sink: capture.SinkFunc(func(*capture.Op) {}), Guard: g,
		Logger: testLogger(&testing.T{})})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			b.Error(err)
		}
	})
	return f
}

// runB runs a child process and returns its CPU time (user+sys).
func runB(b *testing.B, name string, args ...string) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// BenchmarkGuardCopy is the FUSE copy (cp -r of $GOROOT/src/encoding, a
// child process, into the mount) with no guard and with a guard on which
// nobody is listed: what the guard costs every mutating operation. Besides
// wall time it reports cpu-ns/op, the CPU time of cp plus this process
// (which serves the mount), less disturbed by a loaded machine.
//
//	go test -run '^$' -bench GuardCopy -count 6 ./internal/capture/fusefs/ | tee /tmp/g.txt
//	benchstat -col /guard /tmp/g.txt
func BenchmarkGuardCopy(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for a direct FUSE mount")
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		b.Fatal(err)
	}
	src := filepath.Join(strings.TrimSpace(string(goroot)), "src", "encoding")
	for _, mode := range []string{"off", "on"} {
		b.Run("guard="+mode, func(b *testing.B) {
			backing := b.TempDir()
			f := mountB(b, backing, guardOf(b, mode))
			i := 0
			var cpu time.Duration
			self0 := selfCPU()
			for b.Loop() {
				dst := filepath.Join(f.Mountpoint(), fmt.Sprint(i))
				i++
				cpu += runB(b, "cp", "-r", src, dst)
			}
			cpu += selfCPU() - self0
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
			b.StopTimer()
			os.RemoveAll(backing)
		})
	}
}

// BenchmarkGuardDelete deletes files of 4 KiB through the mount (rm -r,
// a child process) with no guard, with a guard on which nobody is listed,
// and with snapshots before destroy: the cost of keeping a copy of every
// file deleted. ns/op is per file.
func BenchmarkGuardDelete(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root for a direct FUSE mount")
	}
	const files = 200
	data := make([]byte, 4096)
	for _, mode := range []string{"off", "on", "snapshot"} {
		b.Run("guard="+mode, func(b *testing.B) {
			backing := b.TempDir()
			f := mountB(b, backing, guardOf(b, mode))
			for b.Loop() {
				b.StopTimer()
				dir := filepath.Join(backing, "d")
				os.Mkdir(dir, 0o755)
				for i := range files {
					data[0], data[1] = byte(i), byte(i>>8) // distinct contents: no deduplication
					if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), data, 0o644); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				runB(b, "rm", "-r", filepath.Join(f.Mountpoint(), "d"))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*files), "ns/file")
		})
	}
}

// BenchmarkRefuseNobodyListed is what every mutating operation pays for
// the guard while nobody is listed: the check before the operation.
func BenchmarkRefuseNobodyListed(b *testing.B) {
	g, err := guard.New(guard.Options{Config: guard.DefaultConfig()})
	if err != nil {
		b.Fatal(err)
	}
	for _, side := range []struct {
		name string
		g    Guard
	}{{"guard=off", nil}, {"guard=on", g}} {
		b.Run(side.name, func(b *testing.B) {
			f := &FS{guard: side.g, procs: newProcCache()}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if f.refuse(ctx, "write") {
					b.Fatal("refused")
				}
			}
		})
	}
}

// TestRefuseNobodyListedAllocs pins the check at no allocation.
func TestRefuseNobodyListedAllocs(t *testing.T) {
	g, _ := guard.New(guard.Options{Config: guard.DefaultConfig()})
	f := &FS{guard: g, procs: newProcCache()}
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { f.refuse(ctx, "write") }); n != 0 {
		t.Errorf("refuse with nobody listed: %v allocs, want 0", n)
	}
}
