package fanotify

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/internal/capture"
)

// countSink counts ops by kind.
type countSink struct {
	n     [16]atomic.Int64
	total atomic.Int64
	last  atomic.Int64 // unix ns of the last op
}

func (c *countSink) Emit(op *capture.Op) {
	c.n[op.Kind].Add(1)
	c.total.Add(1)
	c.last.Store(time.Now().UnixNano())
}

// storm runs cycles create/write/close/delete cycles in dir from the
// calling goroutine and returns how long they took.
func storm(tb testing.TB, dir string, cycles int) time.Duration {
	data := make([]byte, 64)
	start := time.Now()
	for i := range cycles {
		p := dir + "/f" + strconv.Itoa(i)
		fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err != nil {
			tb.Fatal(err)
		}
		unix.Write(fd, data)
		unix.Close(fd)
		if err := unix.Unlink(p); err != nil {
			tb.Fatal(err)
		}
	}
	return time.Since(start)
}

// BenchmarkStorm runs a storm of 100,000 create/write/close/delete cycles
// on a watched tree and reports: the storm's time unwatched and watched
// (same directory, same run) and the slowdown; ops captured against the 3
// expected per cycle; overflows; and the sustained capture rate (ops from
// the storm's start until the last op was emitted). Run with
// -benchtime=1x -count=N. SEMPROP_STORM_CYCLES changes the storm size;
// SEMPROP_STORM_KERNEL_ONLY=1 pauses the reader during the storm (with an
// unlimited queue), so the slowdown measured is the kernel's alone, and
// ops/s is then the rate at which the watcher works off the backlog.
// SEMPROP_STORM_READ_ONLY=1 replaces the processing with a reader that only
// counts records (3 per record, to end the wait): the slowdown of a bare
// fanotify group and read loop, the floor for this watcher.
func BenchmarkStorm(b *testing.B) {
	kernelOnly := os.Getenv("SEMPROP_STORM_KERNEL_ONLY") != ""
	readOnly := os.Getenv("SEMPROP_STORM_READ_ONLY") != ""
	cycles := 100_000
	if v, err := strconv.Atoi(os.Getenv("SEMPROP_STORM_CYCLES")); err == nil && v > 0 {
		cycles = v
	}
	for _, fs := range []string{"tmpfs", "rootfs"} {
		fs := fs
		b.Run(fs, func(b *testing.B) {
			var dir string
			if fs == "tmpfs" {
				dir = tmpfsRoot(b)
			} else {
				needRoot(b)
				var err error
				if dir, err = os.MkdirTemp("/var/tmp", "semprop-storm-"); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { os.RemoveAll(dir) })
			}
			b.ReportAllocs()
			var unwatched, watched, drained time.Duration
			var captured, overflows, lost, records, reads int64
			for b.Loop() {
				unwatched += storm(b, dir, cycles)

				sink := &countSink{}
				w, err := New(Options{Root: dir, Sink: sink, UnlimitedQueue: kernelOnly})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- w.Run(ctx) }()
				if readOnly {
					w.be = discardBackend{w.be, &sink.total}
				}
				if kernelOnly {
					w.Pause()
				}
				start := time.Now()
				watched += storm(b, dir, cycles)
				resumed := time.Now()
				if kernelOnly {
					w.Resume()
				}
				want := int64(3 * cycles)
				deadline := time.Now().Add(60 * time.Second)
				for sink.total.Load() < want && time.Now().Before(deadline) {
					time.Sleep(2 * time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond)
				if kernelOnly {
					start = resumed // the backlog's processing alone
				}
				drained += time.Unix(0, sink.last.Load()).Sub(start)
				got := sink.n[capture.KindCreate].Load() + sink.n[capture.KindWrite].Load() + sink.n[capture.KindDelete].Load()
				captured += got
				if got < want {
					lost += want - got
				}
				s := w.Stats()
				overflows += int64(s.Overflows)
				records += int64(s.EventsRead)
				reads += int64(s.Reads)
				cancel()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				if !readOnly && (got != want || s.Overflows != 0) {
					b.Logf("%s: ops %d of %d (create %d write %d delete %d), overflows %d, stats %+v", fs, got, want,
						sink.n[capture.KindCreate].Load(), sink.n[capture.KindWrite].Load(), sink.n[capture.KindDelete].Load(), s.Overflows, s)
				}
			}
			n := float64(b.N)
			b.ReportMetric(unwatched.Seconds()/n, "unwatched_s")
			b.ReportMetric(watched.Seconds()/n, "watched_s")
			b.ReportMetric(100*(watched.Seconds()/unwatched.Seconds()-1), "slowdown_%")
			b.ReportMetric(float64(overflows)/n, "overflows")
			b.ReportMetric(float64(records)/n/float64(cycles), "records/cycle")
			b.ReportMetric(float64(records)/float64(max(reads, 1)), "records/read")
			if !readOnly { // the read-only baseline emits no ops
				b.ReportMetric(float64(captured)/n, "ops_captured")
				b.ReportMetric(float64(lost)/n, "ops_lost")
				b.ReportMetric(float64(captured)/drained.Seconds(), "ops/s")
			}
		})
	}
}

var _ = fmt.Sprint

// discardBackend reads but does not process: for BenchmarkStorm's
// read-only baseline.
type discardBackend struct {
	backend
	n *atomic.Int64
}

func (d discardBackend) handle(buf []byte, now time.Time) {
	p := parser{buf: buf}
	var ev rawEvent
	for {
		if ok, _ := p.next(&ev); !ok {
			return
		}
		d.n.Add(3)
	}
}

// TestStormStats: a storm of create/write/close/delete cycles read as a
// backlog (the kernel merges each cycle into one record) is captured
// whole without an lstat per record: the names are gone, and one listing
// of their directory per read batch says so.
func TestStormStats(t *testing.T) {
	dir := tmpfsRoot(t)
	sink := &countSink{}
	w, err := New(Options{Root: dir, Sink: sink, Logger: testLogger(t), UnlimitedQueue: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	const cycles = 3000
	w.Pause()
	storm(t, dir, cycles)
	w.Resume()
	deadline := time.Now().Add(30 * time.Second)
	for sink.total.Load() < 3*cycles && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	for _, k := range []capture.Kind{capture.KindCreate, capture.KindWrite, capture.KindDelete} {
		if n := sink.n[k].Load(); n != cycles {
			t.Errorf("%s ops: %d, want %d", k, n, cycles)
		}
	}
	t.Logf("%d cycles: %d lstat calls, %d directory listings, %d reads", cycles, w.c.lstats.Load(), w.c.listings.Load(), w.Stats().Reads)
	if n := w.c.lstats.Load(); n > cycles/20 {
		t.Errorf("%d lstat calls for %d cycles read as a backlog, want at most %d", n, cycles, cycles/20)
	}
}
