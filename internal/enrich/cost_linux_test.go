package enrich

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/bridge"
	"github.com/semprop/semprop/internal/capture/fanotify"
	"github.com/semprop/semprop/internal/capture/fusefs"
)

// The cost of enrichment on capture, measured end to end: the kernel
// boundary (fanotify watcher → bridge → Publisher → a counting next
// stage) under a storm, and a FUSE mount under a copy, each run with
// content facts off and on in the same iteration.

// costNext counts what reaches the next stage and how long each event
// spent in the Publisher: from the bridge's call of PublishBatch to the
// Publisher's call of Next.
type costNext struct {
	mu     sync.Mutex
	in     time.Time // when the batch being published entered the Publisher
	byType map[string]int
	last   time.Time
	delays []time.Duration
}

func (c *costNext) PublishBatch(_ context.Context, evs []*event.Event) error {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range evs {
		c.byType[ev.Type]++
		c.delays = append(c.delays, now.Sub(c.in))
	}
	c.last = now
	return nil
}

func (c *costNext) count(typ string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byType[typ]
}

// costFront is what the bridge publishes to: it notes when each batch
// enters the Publisher.
type costFront struct {
	p    *Publisher
	next *costNext
}

func (f costFront) PublishBatch(ctx context.Context, evs []*event.Event) error {
	f.next.mu.Lock()
	f.next.in = time.Now()
	f.next.mu.Unlock()
	return f.p.PublishBatch(ctx, evs)
}

// costRun is one measured run.
type costRun struct {
	work     time.Duration // the workload's own time (the storm, the cp)
	captured time.Duration // from the workload's start to the last event out
	bytes    uint64        // content read
	delays   []time.Duration
	stats    Stats
}

// costTree runs a tree (watched, or mounted when mnt is set) through a
// Publisher with content facts on or off, runs work, waits until done()
// says every event is out (or 60s), and stops it all.
func costTree(tb testing.TB, root, mnt string, content bool, work func() time.Duration, done func(*costNext) bool) costRun {
	tb.Helper()
	next := &costNext{byType: map[string]int{}}
	subj := root
	if mnt != "" {
		subj = mnt
	}
	opts := Options{Next: next, Root: subj, NoContent: !content, NoIgnoreFiles: true}
	if mnt != "" {
		opts.Backing = root
	}
	p, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	bo := bridge.Options{Publisher: costFront{p, next}, Source: "semprop://bench", SelfPID: int32(os.Getpid())}
	if mnt != "" {
		bo.Backing, bo.Mount, bo.NoPassthrough = root, mnt, true
	}
	br, err := bridge.New(bo)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = br.Run(ctx) })
	var fs *fusefs.FS
	if mnt != "" {
		fs, err = fusefs.Mount(fusefs.Options{Backing: root, Mountpoint: mnt, Sink: br.FUSE(), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			cancel()
			wg.Wait()
			tb.Fatalf("mount: %v", err)
		}
		br.SetInvalidator(fs)
	}
	w, err := fanotify.New(fanotify.Options{Root: root, Sink: br.Kernel(), Shadows: mnt != ""})
	if err != nil {
		tb.Fatal(err)
	}
	wg.Go(func() { _ = w.Run(ctx) })
	time.Sleep(50 * time.Millisecond)

	start := time.Now()
	var r costRun
	r.work = work()
	deadline := time.Now().Add(60 * time.Second)
	for !done(next) && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if !done(next) {
		tb.Errorf("not every event came out within 60s: %v", next.byType)
	}
	next.mu.Lock()
	r.captured = next.last.Sub(start)
	r.delays = slices.Clone(next.delays)
	next.mu.Unlock()
	if fs != nil {
		if err := fs.Unmount(); err != nil {
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	}
	cancel()
	wg.Wait()
	w.Close()
	r.stats = p.Stats()
	r.bytes = r.stats.Bytes
	if err := p.Close(context.Background()); err != nil {
		tb.Error(err)
	}
	return r
}

// reportCost reports the off and on runs of one workload.
func reportCost(b *testing.B, off, on []costRun) {
	sum := func(rs []costRun, f func(costRun) time.Duration) time.Duration {
		var t time.Duration
		for _, r := range rs {
			t += f(r)
		}
		return t
	}
	capOff, capOn := sum(off, func(r costRun) time.Duration { return r.captured }), sum(on, func(r costRun) time.Duration { return r.captured })
	workOff, workOn := sum(off, func(r costRun) time.Duration { return r.work }), sum(on, func(r costRun) time.Duration { return r.work })
	n := float64(len(on))
	b.ReportMetric(capOff.Seconds()/n, "off_capture_s")
	b.ReportMetric(capOn.Seconds()/n, "on_capture_s")
	b.ReportMetric(100*(capOn.Seconds()/capOff.Seconds()-1), "capture_cost_%")
	b.ReportMetric(100*(workOn.Seconds()/workOff.Seconds()-1), "work_cost_%")
	var bytes uint64
	var ds, dsOff []time.Duration
	var enriched, skipped, gone uint64
	for _, r := range on {
		bytes += r.bytes
		ds = append(ds, r.delays...)
		enriched, skipped, gone = enriched+r.stats.Enriched, skipped+r.stats.Skipped, gone+r.stats.Gone
	}
	for _, r := range off {
		dsOff = append(dsOff, r.delays...)
	}
	b.ReportMetric(float64(bytes)/1e6/capOn.Seconds(), "enrich_MB/s")
	b.ReportMetric(float64(enriched)/n, "enriched")
	b.ReportMetric(float64(skipped)/n, "skipped")
	b.ReportMetric(float64(gone)/n, "gone")
	pct := func(ds []time.Duration, p int) float64 {
		if len(ds) == 0 {
			return 0
		}
		slices.Sort(ds)
		return float64(ds[min(len(ds)*p/100, len(ds)-1)].Microseconds())
	}
	b.ReportMetric(pct(ds, 50), "on_delay_p50_µs")
	b.ReportMetric(pct(ds, 99), "on_delay_p99_µs")
	b.ReportMetric(pct(dsOff, 50), "off_delay_p50_µs")
	b.ReportMetric(pct(dsOff, 99), "off_delay_p99_µs")
}

// BenchmarkEnrichStorm: a storm of create / write 64 bytes / close /
// unlink cycles (bench row 4) on a watched tmpfs, content facts off and on.
// SEMPROP_COST_CYCLES sets the cycles (default 20,000). Run with
// -benchtime=Nx.
func BenchmarkEnrichStorm(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: fanotify filesystem marks")
	}
	cycles := 20000
	if v, err := strconv.Atoi(os.Getenv("SEMPROP_COST_CYCLES")); err == nil && v > 0 {
		cycles = v
	}
	var off, on []costRun
	order := []bool{false, true}
	for b.Loop() {
		for _, content := range order {
			root := b.TempDir()
			if err := unix.Mount("semprop-bench", root, "tmpfs", 0, "size=256m,nr_inodes=400k"); err != nil {
				b.Skipf("cannot mount tmpfs: %v", err)
			}
			storm := func() time.Duration {
				data := make([]byte, 64)
				t0 := time.Now()
				for i := range cycles {
					p := root + "/f" + strconv.Itoa(i)
					fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
					if err != nil {
						b.Fatal(err)
					}
					unix.Write(fd, data)
					unix.Close(fd)
					unix.Unlink(p)
				}
				return time.Since(t0)
			}
			r := costTree(b, root, "", content, storm, func(n *costNext) bool {
				return n.count(event.TypeDelete) >= cycles && n.count(event.TypeWrite) >= cycles
			})
			unix.Unmount(root, unix.MNT_DETACH)
			if content {
				on = append(on, r)
			} else {
				off = append(off, r)
			}
		}
		order[0], order[1] = order[1], order[0] // neither always goes first
	}
	reportCost(b, off, on)
}

// BenchmarkEnrichCopy: a copy of a Go source directory into a FUSE mount
// (bench row 5; without passthrough), content facts off and on. The
// directory is SEMPROP_COST_COPY (default $GOROOT/src/net).
func BenchmarkEnrichCopy(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: fanotify filesystem marks and a FUSE mount")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		b.Skipf("needs /dev/fuse: %v", err)
	}
	src := os.Getenv("SEMPROP_COST_COPY")
	if src == "" {
		out, err := exec.Command("go", "env", "GOROOT").Output()
		if err != nil {
			b.Skipf("go env GOROOT: %v (set SEMPROP_COST_COPY)", err)
		}
		src = filepath.Join(strings.TrimSpace(string(out)), "src", "net")
	}
	var files int
	filepath.WalkDir(src, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files++
		}
		return nil
	})
	// A copy to warm the page cache with the source.
	if out, err := exec.Command("cp", "-r", src, b.TempDir()+"/warm").CombinedOutput(); err != nil {
		b.Fatalf("cp: %v: %s", err, out)
	}
	var off, on []costRun
	order := []bool{false, true}
	for b.Loop() {
		for _, content := range order {
			backing, mnt := b.TempDir(), b.TempDir()
			cp := func() time.Duration {
				t0 := time.Now()
				if out, err := exec.Command("cp", "-r", src, mnt+"/copy").CombinedOutput(); err != nil {
					b.Fatalf("cp: %v: %s", err, out)
				}
				return time.Since(t0)
			}
			r := costTree(b, backing, mnt, content, cp, func(n *costNext) bool {
				return n.count(event.TypeWrite) >= files
			})
			if content {
				on = append(on, r)
			} else {
				off = append(off, r)
			}
		}
		order[0], order[1] = order[1], order[0] // neither always goes first
	}
	reportCost(b, off, on)
}
