package bridge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
)

// recorder is a fake Publisher that records what it is given. gate, when
// set, blocks every call until it is closed; fail makes the first fail
// calls return an error.
type recorder struct {
	mu      sync.Mutex
	evs     []*event.Event
	batches int
	fail    int
	gate    chan struct{}
}

func (r *recorder) PublishBatch(ctx context.Context, evs []*event.Event) error {
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return errors.New("disk on fire")
	}
	r.evs = append(r.evs, evs...)
	r.batches++
	return nil
}

func (r *recorder) events() []*event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*event.Event(nil), r.evs...)
}

// waitFor polls until the recorder holds n events or the deadline passes.
func (r *recorder) waitFor(t *testing.T, n int, d time.Duration) []*event.Event {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		evs := r.events()
		if len(evs) >= n || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(time.Millisecond)
	}
}

// invalRecorder is a fake Invalidator.
type invalRecorder struct {
	mu    sync.Mutex
	calls []string
}

func (i *invalRecorder) add(s string)                 { i.mu.Lock(); i.calls = append(i.calls, s); i.mu.Unlock() }
func (i *invalRecorder) InvalidateContent(rel string) { i.add("content " + rel) }
func (i *invalRecorder) InvalidateEntry(d, n string)  { i.add("entry " + d + " " + n) }
func (i *invalRecorder) InvalidateDelete(d, n string) { i.add("delete " + d + " " + n) }
func (i *invalRecorder) get() []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]string(nil), i.calls...)
}

var _ Publisher = (*recorder)(nil)
var _ Invalidator = (*invalRecorder)(nil)

func startBridge(t *testing.T, opts Options) (*Bridge, context.CancelFunc, chan error) {
	t.Helper()
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return b, cancel, done
}

func op(bd event.Boundary, k capture.Kind, path string, pid int32) *capture.Op {
	return &capture.Op{Kind: k, Boundary: bd, Path: path, Time: time.Now(), Known: event.HasPID, PID: pid}
}

func TestBridgeEndToEnd(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	rec, inv := &recorder{}, &invalRecorder{}
	b, cancel, done := startBridge(t, Options{Publisher: rec, Source: "semprop://h", Backing: "/b", Mount: "/m",
		Invalidator: inv, SelfPID: 100, Window: time.Second})

	// Shadow and FUSE op from two goroutines, in either order.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			f := op(event.BoundaryFUSE, capture.KindCreate, fmt.Sprintf("/m/f%d", i), 42)
			f.Comm = "touch"
			b.FUSE().Emit(f)
		})
		wg.Go(func() {
			k := op(event.BoundaryKernel, capture.KindCreate, fmt.Sprintf("/b/f%d", i), 100)
			k.Inode, k.Known = uint64(1000+i), k.Known|event.HasInode
			b.Kernel().Emit(k)
		})
	}
	wg.Wait()
	b.Kernel().Emit(op(event.BoundaryKernel, capture.KindDelete, "/b/direct", 500))
	evs := rec.waitFor(t, 51, 5*time.Second)
	if len(evs) != 51 {
		t.Fatalf("published %d events, want 51", len(evs))
	}
	seen := map[string]bool{}
	for _, ev := range evs {
		if seen[ev.Subject] {
			t.Errorf("%s published twice", ev.Subject)
		}
		seen[ev.Subject] = true
		if ev.Subject == "/m/direct" {
			if ev.Boundaries.String() != "kernel" || ev.Source != "semprop://h/kernel" || ev.Context.PID != 500 {
				t.Errorf("direct delete = %v %v pid %d, want kernel semprop://h/kernel 500", ev.Boundaries, ev.Source, ev.Context.PID)
			}
			continue
		}
		if ev.Boundaries.String() != "fuse,kernel" || ev.Boundary != event.BoundaryFUSE || ev.Context.PID != 42 ||
			ev.Context.Comm != "touch" || !ev.Context.Has(event.HasInode) || ev.Source != "semprop://h/fuse" {
			t.Errorf("%s: boundaries %v boundary %v pid %d comm %q inode %v source %s, want fuse,kernel fuse 42 touch inode semprop://h/fuse",
				ev.Subject, ev.Boundaries, ev.Boundary, ev.Context.PID, ev.Context.Comm, ev.Context.Has(event.HasInode), ev.Source)
		}
	}
	if diff := cmp.Diff([]string{"delete  direct"}, inv.get()); diff != "" {
		t.Errorf("invalidations (-want +got):\n%s", diff)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	done <- nil // for the cleanup
	st := b.Stats()
	want := Stats{SeenKernel: 51, SeenFUSE: 50, Shadows: 50, Merged: 50, KernelOnly: 1, Invalidations: 1,
		Emitted: 51, Batches: st.Batches, Window: time.Second}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
	if st.DedupRate() != 1 {
		t.Errorf("DedupRate = %v, want 1", st.DedupRate())
	}
}

// TestBridgeFlushOnCancel: what the bridge holds is published when Run's
// context ends, not lost.
func TestBridgeFlushOnCancel(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	rec := &recorder{}
	b, cancel, done := startBridge(t, Options{Publisher: rec, Backing: "/b", Mount: "/m", SelfPID: 100, Window: time.Hour})
	b.FUSE().Emit(op(event.BoundaryFUSE, capture.KindMkdir, "/m/d", 42))
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().Pending != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := len(rec.events()); n != 0 {
		t.Fatalf("published %d events before the window ended, want 0", n)
	}
	cancel()
	<-done
	done <- nil
	evs := rec.events()
	if len(evs) != 1 || evs[0].Type != event.TypeMkdir || evs[0].Boundaries.String() != "fuse" {
		t.Fatalf("after cancel published %v, want one fs.mkdir from fuse", evs)
	}
	b.Kernel().Emit(op(event.BoundaryKernel, capture.KindDelete, "/b/x", 5)) // must not block
	if st := b.Stats(); st.Closed != 1 || st.FUSEOnly != 1 {
		t.Errorf("Stats Closed %d FUSEOnly %d, want 1 1", st.Closed, st.FUSEOnly)
	}
}

// TestBridgeBackpressure: with a stalled publisher and a tiny queue, Emit
// waits instead of dropping, and every event arrives, in order, once the
// publisher resumes.
func TestBridgeBackpressure(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	rec := &recorder{gate: make(chan struct{})}
	b, _, _ := startBridge(t, Options{Publisher: rec, QueueSize: 4, MaxBatch: 2})
	const n = 200
	emitted := make(chan struct{})
	go func() {
		defer close(emitted)
		for i := range n {
			o := op(event.BoundaryKernel, capture.KindWrite, "/w/same", 7)
			o.Size, o.Known = int64(i), o.Known|event.HasSize
			b.Kernel().Emit(o)
		}
	}()
	select {
	case <-emitted:
		t.Fatal("all Emit calls returned with the publisher stalled; want backpressure")
	case <-time.After(200 * time.Millisecond):
	}
	if st := b.Stats(); st.QueueFull == 0 {
		t.Errorf("QueueFull = 0 with a stalled publisher, want > 0")
	}
	close(rec.gate)
	<-emitted
	evs := rec.waitFor(t, n, 5*time.Second)
	if len(evs) != n {
		t.Fatalf("published %d events, want %d", len(evs), n)
	}
	for i, ev := range evs {
		if ev.Context.Size != int64(i) {
			t.Fatalf("event %d has size %d, want %d (order)", i, ev.Context.Size, i)
		}
	}
}

func TestBridgePublishRetry(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	rec := &recorder{fail: 2}
	b, _, _ := startBridge(t, Options{Publisher: rec})
	b.Kernel().Emit(op(event.BoundaryKernel, capture.KindCreate, "/w/a", 7))
	if evs := rec.waitFor(t, 1, 5*time.Second); len(evs) != 1 {
		t.Fatalf("published %d events after two failures, want 1", len(evs))
	}
	if st := b.Stats(); st.PublishErrors != 2 || st.Lost != 0 || st.Emitted != 1 {
		t.Errorf("PublishErrors %d Lost %d Emitted %d, want 2 0 1", st.PublishErrors, st.Lost, st.Emitted)
	}
	rec.mu.Lock()
	rec.fail = 3
	rec.mu.Unlock()
	b.Kernel().Emit(op(event.BoundaryKernel, capture.KindCreate, "/w/b", 7))
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().Lost != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if st := b.Stats(); st.Lost != 1 || st.PublishErrors != 5 {
		t.Errorf("Lost %d PublishErrors %d, want 1 5", st.Lost, st.PublishErrors)
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want error
	}{
		{Options{}, ErrNoPublisher},
		{Options{Publisher: &recorder{}, Backing: "/b"}, ErrMountPair},
		{Options{Publisher: &recorder{}, Mount: "/m"}, ErrMountPair},
		{Options{Publisher: &recorder{}, Backing: "b", Mount: "/m"}, ErrMountPair},
		{Options{Publisher: &recorder{}, Backing: "/b", Mount: "/m"}, nil},
		{Options{Publisher: &recorder{}}, nil},
	} {
		if _, err := New(tc.opts); !errors.Is(err, tc.want) {
			t.Errorf("New(%+v) = %v, want %v", tc.opts, err, tc.want)
		}
	}
	b, _ := New(Options{Publisher: &recorder{}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = b.Run(ctx)
	if err := b.Run(ctx); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
}

// TestBackingSymlink: kernel paths are real paths, so a backing root given
// through a symbolic link still maps to the mount.
func TestBackingSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{Publisher: &recorder{}, Backing: link, Mount: "/m"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.EvalSymlinks(real)
	if got, ok := b.c.toMount(want + "/x"); !ok || got != "/m/x" {
		t.Errorf("toMount(%q) = %q, %v, want /m/x, true", want+"/x", got, ok)
	}
}

// TestBridgeNaps: under a steady stream of ops the correlator and the
// publisher nap instead of being woken per op, so the publisher makes about
// one PublishBatch per PublishDelay, and nothing is lost or reordered.
// Without the naps every op arrives at an idle bridge and is published on
// its own (about one batch per op).
func TestBridgeNaps(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	rec := &recorder{}
	const delay = 25 * time.Millisecond
	b, _, _ := startBridge(t, Options{Publisher: rec, BatchDelay: time.Millisecond, PublishDelay: delay})
	const n = 200
	start := time.Now()
	for i := range n {
		o := op(event.BoundaryKernel, capture.KindCreate, fmt.Sprintf("/w/f%d", i), 7)
		b.Kernel().Emit(o)
		time.Sleep(500 * time.Microsecond)
	}
	evs := rec.waitFor(t, n, 5*time.Second)
	took := time.Since(start)
	if len(evs) != n {
		t.Fatalf("published %d events, want %d", len(evs), n)
	}
	for i, ev := range evs {
		if want := fmt.Sprintf("/w/f%d", i); ev.Subject != want {
			t.Fatalf("event %d is %s, want %s (order)", i, ev.Subject, want)
		}
	}
	rec.mu.Lock()
	batches := rec.batches
	rec.mu.Unlock()
	// One batch per nap, plus the first and a last partial one.
	if limit := int(took/delay) + 3; batches > limit {
		t.Errorf("%d ops over %v made %d PublishBatch calls, want at most %d (one per %v nap)", n, took.Round(time.Millisecond), batches, limit, delay)
	}
}

// TestDeadlineQueueBounded: under a steady stream that never lets the
// correlator run empty, its deadline queue stays about as long as what is
// pending, instead of growing by one slot per op.
func TestDeadlineQueueBounded(t *testing.T) {
	var st counters
	cfg := config{window: 50 * time.Millisecond, maxWindow: 500 * time.Millisecond, selfPID: 100,
		backing: "/b", mount: "/m", bridged: true, srcKernel: "k", srcFUSE: "f"}
	c := newCorrelator(cfg, &st, 64, func(*event.Event) {}, func(InvalKind, string) {})
	now := time.Unix(1_800_000_000, 0)
	const n = 20_000
	for i := range n {
		// One FUSE op per 100µs, never shadowed: about 500 wait at a time.
		now = now.Add(100 * time.Microsecond)
		o := op(event.BoundaryFUSE, capture.KindMkdir, fmt.Sprintf("/m/d%d", i), 7)
		o.Time = now
		c.add(o, now)
		c.expire(now)
		if c.pending == 0 {
			t.Fatalf("op %d: nothing pending; the test needs a queue that never empties", i)
		}
	}
	if got := cap(c.deadlines); got > 16*1024 {
		t.Errorf("deadline queue capacity %d after %d ops with ~%d pending, want it bounded", got, n, c.pending)
	}
}
