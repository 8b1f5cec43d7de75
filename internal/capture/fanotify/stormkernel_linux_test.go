package fanotify

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/internal/cputime"
)

// stormCPU runs the storm on one locked thread and returns that thread's
// CPU time: what the storming process itself pays, the kernel's work of
// making notification events included, without the time it waits for a
// processor (which the wall time of BenchmarkStorm also counts, and which
// moves with everything else on the machine).
func stormCPU(tb testing.TB, dir string, cycles int) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := cputime.Thread()
	storm(tb, dir, cycles)
	return cputime.Thread() - start
}

// BenchmarkStormKernel measures what notification groups cost the process
// that makes the changes, with no processing of the events: a storm of
// create / write / close / delete cycles (as BenchmarkStorm) runs on one
// thread with a bare group watching the directory, drained every 2ms by
// another goroutine that only reads, and the storm thread's CPU time is
// divided by the same storm's with nothing watching, run right before it.
// The groups: inotify with inotifywait's mask in bench row 4 (create,
// close-write, delete), inotify asking for modifications and attributes
// too (what fsnotify asks for), this package's fanotify group and mark,
// and that group without FAN_MODIFY, without FAN_ATTRIB, and reporting
// directory and name only (no object FID). Reports the median ratio of
// SEMPROP_STORM_REPS repetitions (default 9) as storm-cpu-ratio. Run with
// -benchtime=1x.
func BenchmarkStormKernel(b *testing.B) {
	reps := 9
	if v, err := strconv.Atoi(os.Getenv("SEMPROP_STORM_REPS")); err == nil && v > 0 {
		reps = v
	}
	cycles := 40_000
	if v, err := strconv.Atoi(os.Getenv("SEMPROP_STORM_CYCLES")); err == nil && v > 0 {
		cycles = v
	}
	fan := func(flags uint, mask uint64) func(dir string) (int, error) {
		return func(dir string) (int, error) {
			fd, err := unix.FanotifyInit(flags, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
			if err != nil {
				return -1, err
			}
			if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, mask, unix.AT_FDCWD, dir); err != nil {
				unix.Close(fd)
				return -1, err
			}
			return fd, nil
		}
	}
	ino := func(mask uint32) func(dir string) (int, error) {
		return func(dir string) (int, error) {
			fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
			if err != nil {
				return -1, err
			}
			if _, err := unix.InotifyAddWatch(fd, dir, mask); err != nil {
				unix.Close(fd)
				return -1, err
			}
			return fd, nil
		}
	}
	const inotifywait = unix.IN_CREATE | unix.IN_CLOSE_WRITE | unix.IN_DELETE
	groups := []struct {
		name string
		open func(dir string) (int, error)
	}{
		{"inotify-inotifywait-mask", ino(inotifywait)},
		{"inotify-with-modify-attrib", ino(inotifywait | unix.IN_MODIFY | unix.IN_ATTRIB)},
		{"fanotify-watcher", fan(fanInitFlags, fanMarkMask)},
		{"fanotify-no-modify", fan(fanInitFlags, fanMarkMask&^unix.FAN_MODIFY)},
		{"fanotify-no-attrib", fan(fanInitFlags, fanMarkMask&^unix.FAN_ATTRIB)},
		{"fanotify-dfid-name-only", fan(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_REPORT_DFID_NAME, fanMarkMask)},
	}
	for _, g := range groups {
		b.Run(g.name, func(b *testing.B) {
			dir := tmpfsRoot(b)
			for b.Loop() {
				var ratios []float64
				for range reps {
					base := stormCPU(b, dir, cycles)
					fd, err := g.open(dir)
					if err != nil {
						b.Fatal(err)
					}
					stop := make(chan struct{})
					var wg sync.WaitGroup
					wg.Go(func() { drain(fd, stop) })
					watched := stormCPU(b, dir, cycles)
					close(stop)
					wg.Wait()
					unix.Close(fd)
					ratios = append(ratios, watched.Seconds()/base.Seconds())
				}
				slices.Sort(ratios)
				b.ReportMetric(ratios[len(ratios)/2], "storm-cpu-ratio")
			}
		})
	}
}

// drain reads fd (non-blocking) every 2ms until stop is closed, discarding
// what it reads, as a watcher that reads in batches would.
func drain(fd int, stop chan struct{}) {
	buf := make([]byte, 256<<10)
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		for {
			if n, _ := unix.Read(fd, buf); n <= 0 {
				break
			}
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}
