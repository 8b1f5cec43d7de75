package fanotify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
)

// runWorkload drives the scripted child one step at a time, waiting after
// each step until the watcher has reported that step's ops (so the kernel
// cannot merge records of different steps), and returns the ops and the
// ops expected.
func runWorkload(t *testing.T, w *Watcher, rec *recorder, withPID bool) (got, want []opView) {
	t.Helper()
	root := w.Root()
	c := startChild(t, "steps", root)
	pid := int32(c.cmd.Process.Pid)
	comm := procComm(t, c.cmd.Process.Pid)
	for _, s := range workload(root) {
		if _, err := c.in.Write([]byte("go\n")); err != nil {
			t.Fatal(err)
		}
		if l := c.line(t); l != "ok" {
			t.Fatalf("child step %s: %s", s.name, l)
		}
		if withPID {
			want = append(want, withActor(s.want, pid, comm)...)
		} else {
			want = append(want, s.want...)
		}
		n := len(want)
		waitForOr(t, 10*time.Second, "ops of step "+s.name, func() bool { return rec.len() >= n }, func() string {
			var got []opView
			for _, op := range rec.snapshot() {
				got = append(got, view(root, op))
			}
			return fmt.Sprintf("want %d ops %v, got %v; stats %+v", n, want, got, w.Stats())
		})
	}
	if l := c.line(t); l != "done" {
		t.Fatalf("child: %s", l)
	}
	time.Sleep(100 * time.Millisecond) // let stray extra ops arrive, to be caught below
	for _, op := range rec.snapshot() {
		got = append(got, view(root, op))
		if op.Boundary != event.BoundaryKernel {
			t.Errorf("op %v: boundary %v, want kernel", op.Kind, op.Boundary)
		}
		if withPID && op.Known&event.HasPID == 0 {
			t.Errorf("op %v %s: pid not known", op.Kind, op.Path)
		}
	}
	return got, want
}

func TestWorkloadFanotify(t *testing.T) {
	root := tmpfsRoot(t)
	w, rec := startWatcher(t, Options{Root: root, Logger: testLogger(t)})
	if w.Mode() != "fanotify" {
		t.Fatalf("Mode() = %q, want fanotify", w.Mode())
	}
	got, want := runWorkload(t, w, rec, true)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ops (-want +got):\n%s", diff)
	}
	// Exe comes from /proc/PID/exe of the child.
	exe, _ := os.Executable()
	for _, op := range rec.snapshot() {
		switch op.Kind {
		case capture.KindCreate, capture.KindMkdir, capture.KindWrite, capture.KindRename, capture.KindLink:
			if op.Known&event.HasInode == 0 || op.Inode == 0 || op.Known&event.HasMode == 0 {
				t.Errorf("op %v %s: inode %d / mode not known", op.Kind, op.Path, op.Inode)
			}
		}
		if op.Exe != exe || op.Known&(event.HasUID|event.HasGID) == 0 || op.UID != uint32(os.Geteuid()) {
			t.Errorf("op %v %s: Exe = %q, uid %d (known %v); want %q, %d", op.Kind, op.Path, op.Exe, op.UID, op.Known&event.HasUID != 0, exe, os.Geteuid())
			break
		}
	}
	t.Logf("stats: %+v", w.Stats())
}

func TestWorkloadInotify(t *testing.T) {
	root := tmpfsRoot(t)
	w, rec := startWatcher(t, Options{Root: root, ForceInotify: true})
	if w.Mode() != "inotify" {
		t.Fatalf("Mode() = %q, want inotify", w.Mode())
	}
	got, want := runWorkload(t, w, rec, false)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ops (-want +got):\n%s", diff)
	}
}

// TestWorkloadRootFS runs the workload on a directory of the root file
// system, which the whole machine shares: the filesystem mark sees every
// unrelated write on it, and the watcher must drop those.
func TestWorkloadRootFS(t *testing.T) {
	needRoot(t)
	dir, err := os.MkdirTemp("/var/tmp", "semprop-fanotify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	w, rec := startWatcher(t, Options{Root: dir})
	if w.Mode() != "fanotify" {
		t.Fatalf("Mode() = %q, want fanotify", w.Mode())
	}
	// Unrelated activity on the same file system, outside the root.
	other, err := os.MkdirTemp("/var/tmp", "semprop-outside-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	for i := range 50 {
		os.WriteFile(filepath.Join(other, "n"+string(rune('a'+i%26))), []byte("x"), 0o644)
	}
	got, want := runWorkload(t, w, rec, true)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ops (-want +got):\n%s", diff)
	}
	if s := w.Stats(); s.DroppedOutside == 0 {
		t.Errorf("Stats().DroppedOutside = 0, want > 0 (outside writes were made)")
	}
}

// TestMergedRecords stalls the reader so that the kernel merges the records
// of one object, then checks that the merged records split into the right
// logical ops in the right order.
func TestMergedRecords(t *testing.T) {
	root := tmpfsRoot(t)
	if err := os.WriteFile(filepath.Join(root, "replaced"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, rec := startWatcher(t, Options{Root: root})
	w.Pause()
	p := func(s string) string { return filepath.Join(root, s) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// create, write, close, delete: one CREATE|MODIFY|CLOSE_WRITE|DELETE record.
	must(writeFile(p("tmp"), os.O_CREATE|os.O_WRONLY, "data"))
	must(os.Remove(p("tmp")))
	// mkdir + rmdir: one CREATE|DELETE|ONDIR record.
	must(os.Mkdir(p("d"), 0o755))
	must(os.Remove(p("d")))
	// create + write + close + chmod of a file that stays.
	must(writeFile(p("kept"), os.O_CREATE|os.O_WRONLY, "abc"))
	must(os.Chmod(p("kept"), 0o600))
	// two write cycles on one file merge into one record: one write.
	must(writeFile(p("replaced"), os.O_WRONLY|os.O_TRUNC, "new"))
	must(writeFile(p("replaced"), os.O_WRONLY|os.O_APPEND, "er"))
	// a directory made, filled, emptied and removed: the children's records
	// resolve through the handle learnt from the mkdir, and the rmdir comes
	// after them.
	must(os.Mkdir(p("tree"), 0o755))
	must(writeFile(p("tree/leaf"), os.O_CREATE|os.O_WRONLY, "l"))
	must(os.Remove(p("tree/leaf")))
	must(os.Remove(p("tree")))
	// the name is reused by a new object before the reader sees the first.
	must(writeFile(p("reuse"), os.O_CREATE|os.O_WRONLY, "1"))
	must(os.Remove(p("reuse")))
	must(writeFile(p("reuse"), os.O_CREATE|os.O_WRONLY, "22"))
	w.Resume()

	pid, comm := int32(os.Getpid()), procComm(t, os.Getpid())
	want := withActor([]opView{
		{Kind: capture.KindCreate, Path: "tmp"}, {Kind: capture.KindWrite, Path: "tmp", Size: 0}, {Kind: capture.KindDelete, Path: "tmp"},
		{Kind: capture.KindMkdir, Path: "d", IsDir: true}, {Kind: capture.KindRmdir, Path: "d", IsDir: true},
		{Kind: capture.KindCreate, Path: "kept"}, {Kind: capture.KindWrite, Path: "kept", Size: 3}, {Kind: capture.KindAttrib, Path: "kept"},
		{Kind: capture.KindWrite, Path: "replaced", Size: 5},
		{Kind: capture.KindMkdir, Path: "tree", IsDir: true},
		{Kind: capture.KindCreate, Path: "tree/leaf"}, {Kind: capture.KindWrite, Path: "tree/leaf"}, {Kind: capture.KindDelete, Path: "tree/leaf"},
		{Kind: capture.KindRmdir, Path: "tree", IsDir: true},
		{Kind: capture.KindCreate, Path: "reuse"}, {Kind: capture.KindWrite, Path: "reuse"}, {Kind: capture.KindDelete, Path: "reuse"},
		{Kind: capture.KindCreate, Path: "reuse"}, {Kind: capture.KindWrite, Path: "reuse", Size: 2},
	}, pid, comm)
	waitFor(t, 10*time.Second, "merged ops", func() bool { return rec.len() >= len(want) })
	time.Sleep(100 * time.Millisecond)
	var got []opView
	for _, op := range rec.snapshot() {
		got = append(got, view(root, op))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ops (-want +got):\n%s", diff)
	}
	// The point of the test: the kernel really merged records.
	if s := w.Stats(); s.EventsRead >= uint64(len(want)) {
		t.Errorf("Stats().EventsRead = %d for %d ops: the records were not merged, the test proves nothing", s.EventsRead, len(want))
	}
}

func TestNewErrors(t *testing.T) {
	sink := capture.SinkFunc(func(*capture.Op) {})
	for _, tc := range []struct {
		name string
		opts Options
		want error
	}{
		{"no sink", Options{Root: "/tmp"}, ErrNoSink},
		{"relative", Options{Root: "tmp", Sink: sink}, ErrNoRoot},
		{"missing", Options{Root: "/nonexistent/semprop", Sink: sink}, ErrNoRoot},
	} {
		_, err := New(tc.opts)
		if err == nil || !errors.Is(err, tc.want) {
			t.Errorf("New(%s) = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestLifecycle(t *testing.T) {
	root := tmpfsRoot(t)
	sink := capture.SinkFunc(func(*capture.Op) {})
	for _, mode := range []bool{false, true} {
		// Close without Run, then Run: ErrClosed.
		w, err := New(Options{Root: root, Sink: sink, ForceInotify: mode})
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		w.Close()
		if err := w.Run(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("Run after Close = %v, want ErrClosed", err)
		}

		// Close while Run is paused and running: Run returns nil.
		w, err = New(Options{Root: root, Sink: sink, ForceInotify: mode})
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 2)
		go func() { errc <- w.Run(context.Background()) }()
		time.Sleep(20 * time.Millisecond)
		go func() { errc <- w.Run(context.Background()) }()
		if err := <-errc; err == nil {
			t.Errorf("second Run = nil, want an error")
		}
		w.Pause()
		os.WriteFile(filepath.Join(root, "x"), nil, 0o644)
		w.Close()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run after Close = %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Run did not return after Close (paused)")
		}
		w.Close()
	}
}

// TestBatchedReads: a busy queue is read in batches (Options.BatchDelay),
// not one wake-up and one read per record, and nothing is lost. Without the delay a
// reader blocked in poll(2) is woken by each record and reads them about
// one or two at a time.
func TestBatchedReads(t *testing.T) {
	root := tmpfsRoot(t)
	w, rec := startWatcher(t, Options{Root: root, BatchDelay: 2 * time.Millisecond})
	const n = 2000
	for i := range n {
		if err := writeFile(filepath.Join(root, fmt.Sprintf("f%d", i)), os.O_CREATE|os.O_WRONLY, "x"); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			time.Sleep(100 * time.Microsecond) // a steady stream, not one burst
		}
	}
	// create + write per file
	waitFor(t, 10*time.Second, "all ops", func() bool { return rec.len() >= 2*n })
	s := w.Stats()
	if s.Reads*10 > s.EventsRead {
		t.Errorf("%d records in %d reads (%.1f per read), want at least 10 per read", s.EventsRead, s.Reads, float64(s.EventsRead)/float64(s.Reads))
	}
	t.Logf("%d records in %d reads", s.EventsRead, s.Reads)
}
