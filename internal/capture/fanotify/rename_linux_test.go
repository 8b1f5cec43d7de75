package fanotify

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/internal/capture"
)

// TestRenameAcrossRoot moves files and directories into and out of the
// watched tree (on the same file system): a move in is a create (or mkdir),
// a move out a delete (or rmdir), and later events in a directory moved in
// carry its new path while a directory moved out goes quiet.
func TestRenameAcrossRoot(t *testing.T) {
	for _, mode := range []struct {
		name    string
		inotify bool
	}{{"fanotify", false}, {"inotify", true}} {
		t.Run(mode.name, func(t *testing.T) {
			fs := tmpfsRoot(t)
			root, out := filepath.Join(fs, "root"), filepath.Join(fs, "out")
			for _, d := range []string{root, out, filepath.Join(out, "d")} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			w, rec := startWatcher(t, Options{Root: root, ForceInotify: mode.inotify})
			r := func(s string) string { return filepath.Join(root, s) }
			o := func(s string) string { return filepath.Join(out, s) }
			steps := []struct {
				name string
				do   func() error
				want []opView
			}{
				{"write outside", func() error { return writeFile(o("d/x"), os.O_CREATE|os.O_WRONLY, "x") }, nil},
				{"make outside file", func() error { return writeFile(o("f"), os.O_CREATE|os.O_WRONLY, "ff") }, nil},
				{"move file in", func() error { return os.Rename(o("f"), r("f")) }, []opView{{Kind: capture.KindCreate, Path: "f"}}},
				{"move dir in", func() error { return os.Rename(o("d"), r("d")) }, []opView{{Kind: capture.KindMkdir, Path: "d", IsDir: true}}},
				{"write in moved-in dir", func() error { return writeFile(r("d/x"), os.O_WRONLY|os.O_APPEND, "y") },
					[]opView{{Kind: capture.KindWrite, Path: "d/x", Size: 2}}},
				{"create in moved-in dir", func() error { return writeFile(r("d/z"), os.O_CREATE|os.O_WRONLY, "") },
					[]opView{{Kind: capture.KindCreate, Path: "d/z"}}},
				{"move file out", func() error { return os.Rename(r("f"), o("f2")) }, []opView{{Kind: capture.KindDelete, Path: "f"}}},
				{"move dir out", func() error { return os.Rename(r("d"), o("d")) }, []opView{{Kind: capture.KindRmdir, Path: "d", IsDir: true}}},
				{"write in moved-out dir", func() error { return writeFile(o("d/x"), os.O_WRONLY|os.O_APPEND, "z") }, nil},
				{"marker", func() error { return os.Mkdir(r("m"), 0o755) }, []opView{{Kind: capture.KindMkdir, Path: "m", IsDir: true}}},
			}
			var want []opView
			for _, s := range steps {
				if err := s.do(); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				want = append(want, s.want...)
				n := len(want)
				waitFor(t, 5*time.Second, s.name, func() bool { return rec.len() >= n })
			}
			time.Sleep(50 * time.Millisecond)
			var got []opView
			for _, op := range rec.snapshot() {
				v := view(w.Root(), op)
				v.PID, v.Comm = 0, ""
				got = append(got, v)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ops (-want +got):\n%s", diff)
			}
		})
	}
}

// TestInotifyNewDirRace creates nested directories and files as fast as it
// can: inotify sees a new directory only once its watch is added, so the
// fallback scans each new directory; every object must still be reported
// once, and every file's data once.
func TestInotifyNewDirRace(t *testing.T) {
	root := tmpfsRoot(t)
	w, rec := startWatcher(t, Options{Root: root, ForceInotify: true})
	const n = 30
	for i := range n {
		d := filepath.Join(root, fmt.Sprintf("d%d", i), "x", "y")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	count := func() map[string]int {
		m := make(map[string]int)
		for _, op := range rec.snapshot() {
			m[op.Kind.String()+" "+view(w.Root(), op).Path]++
		}
		return m
	}
	var keys []string
	for i := range n {
		for _, k := range []string{"fs.mkdir d%d", "fs.mkdir d%d/x", "fs.mkdir d%d/x/y", "fs.create d%d/x/y/f", "fs.write d%d/x/y/f"} {
			keys = append(keys, fmt.Sprintf(k, i))
		}
	}
	waitForOr(t, 10*time.Second, "all creates", func() bool { return len(count()) >= 5*n }, func() string {
		got := count()
		var missing []string
		for _, k := range keys {
			if got[k] == 0 {
				missing = append(missing, k)
			}
		}
		return fmt.Sprintf("missing %q; stats %+v", missing, w.Stats())
	})
	time.Sleep(100 * time.Millisecond)
	got := count()
	for _, key := range keys {
		if got[key] != 1 {
			t.Errorf("%s: %d ops, want 1", key, got[key])
		}
	}
	if len(got) != 5*n {
		t.Errorf("%d distinct ops, want %d: %v", len(got), 5*n, got)
	}
}

// TestInotifyMoveSplitAcrossReads: the kernel queues a rename's
// IN_MOVED_FROM and IN_MOVED_TO one after the other, so a read can take
// the first alone and find the queue empty behind it. That is still one
// rename; only a partner that has not come moveGrace after the queue
// emptied makes it a move out of the tree.
func TestInotifyMoveSplitAcrossReads(t *testing.T) {
	root := tmpfsRoot(t)
	for _, f := range []string{"a", "c"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := handFedInotify(t, root)
	b := h.b
	now := time.Now()

	if err := os.Rename(filepath.Join(root, "a"), filepath.Join(root, "b")); err != nil {
		t.Fatal(err)
	}
	recs := h.records()
	if len(recs) != 2 {
		t.Fatalf("%d records for a rename, want 2", len(recs))
	}
	b.handle(recs[0], now) // IN_MOVED_FROM alone, then the queue is empty
	if wait := b.idle(now); wait <= 0 || wait > moveGrace {
		t.Errorf("idle with a move pending asked to look again in %v, want (0, %v]", wait, moveGrace)
	}
	b.handle(recs[1], now.Add(time.Millisecond))
	want := []opView{{Kind: capture.KindRename, Path: "b", OldPath: "a"}}
	if diff := cmp.Diff(want, h.ops(0)); diff != "" {
		t.Fatalf("a rename read in two parts (-want +got):\n%s", diff)
	}

	// A move out of the tree: IN_MOVED_FROM, and no partner ever. (The
	// tree is a mount of its own; an unwatched directory in it stands for
	// the outside.)
	if err := os.Mkdir(filepath.Join(root, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	b.handle(h.read(), now) // mkdir sub
	b.unwatch(filepath.Join(root, "sub"))
	if err := os.Rename(filepath.Join(root, "c"), filepath.Join(root, "sub", "c")); err != nil {
		t.Fatal(err)
	}
	for _, r := range h.records() {
		b.handle(r, now)
	}
	n := h.rec.len()
	if wait := b.idle(now); wait <= 0 {
		t.Fatalf("idle flushed a move at once")
	}
	if h.rec.len() != n {
		t.Fatalf("ops %v reported before the grace ended", h.ops(n))
	}
	if wait := b.idle(now.Add(moveGrace)); wait != 0 {
		t.Errorf("idle after the grace asked to look again in %v", wait)
	}
	want = []opView{{Kind: capture.KindDelete, Path: "c"}}
	if diff := cmp.Diff(want, h.ops(n)); diff != "" {
		t.Errorf("a move out, after the grace (-want +got):\n%s", diff)
	}
}

// TestInotifyScanWriteBetweenStats: a new directory's scan finds an empty
// file, and the file is written before the watcher looks at it again to
// report it. The write must be reported once: with the create (the scan
// saw the data) or on its own record, not taken for reported because the
// index holds the size that includes it.
func TestInotifyScanWriteBetweenStats(t *testing.T) {
	root := tmpfsRoot(t)
	h := handFedInotify(t, root)
	d, f := filepath.Join(root, "d"), filepath.Join(root, "d", "f")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	mkdir := h.read() // IN_CREATE d: its scan finds f, empty
	wrote := false
	real := lstat
	inject(t, &lstat, func(p string, st *unix.Stat_t) error {
		if p == f && !wrote { // between the scan's look at f and apply's
			wrote = true
			if err := os.WriteFile(f, []byte("data"), 0o644); err != nil {
				t.Error(err)
			}
		}
		return real(p, st)
	})
	h.b.handle(mkdir, time.Now())
	if !wrote {
		t.Fatal("the scan did not look at f")
	}
	h.b.handle(h.read(), time.Now()) // f's own records: IN_MODIFY, IN_CLOSE_WRITE
	want := []opView{
		{Kind: capture.KindMkdir, Path: "d", IsDir: true},
		{Kind: capture.KindCreate, Path: "d/f"},
		{Kind: capture.KindWrite, Path: "d/f", Size: 4},
	}
	if diff := cmp.Diff(want, h.ops(0)); diff != "" {
		t.Errorf("ops (-want +got):\n%s", diff)
	}
}

// TestInotifyScanThenOwnRecords: a file is created and written in a new
// directory right after its watch is added and before its scan: the scan
// reports the create and the write, and the file's own records (create,
// modify, close) that follow are duplicates.
func TestInotifyScanThenOwnRecords(t *testing.T) {
	root := tmpfsRoot(t)
	h := handFedInotify(t, root)
	d, f := filepath.Join(root, "d"), filepath.Join(root, "d", "f")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	mkdir := h.read()
	wrote := false
	real := addWatch
	inject(t, &addWatch, func(fd int, p string, mask uint32) (int, error) {
		wd, err := real(fd, p, mask)
		if p == d && !wrote { // watched, not yet scanned
			wrote = true
			if err := os.WriteFile(f, []byte("data"), 0o644); err != nil {
				t.Error(err)
			}
		}
		return wd, err
	})
	h.b.handle(mkdir, time.Now())
	if !wrote {
		t.Fatal("d was not watched")
	}
	h.b.handle(h.read(), time.Now()) // f's own records
	want := []opView{
		{Kind: capture.KindMkdir, Path: "d", IsDir: true},
		{Kind: capture.KindCreate, Path: "d/f"},
		{Kind: capture.KindWrite, Path: "d/f", Size: 4},
	}
	if diff := cmp.Diff(want, h.ops(0)); diff != "" {
		t.Errorf("ops (-want +got):\n%s", diff)
	}
}

// handFed is an inotify watcher that no Run reads: the test reads its
// queue and hands the bytes to the backend, choosing where reads end.
type handFed struct {
	t    *testing.T
	root string
	b    *inBackend
	rec  *recorder
}

func handFedInotify(t *testing.T, root string) *handFed {
	t.Helper()
	rec := &recorder{}
	w, err := New(Options{Root: root, ForceInotify: true, Sink: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return &handFed{t: t, root: root, b: w.be.(*inBackend), rec: rec}
}

// read takes what the queue holds.
func (h *handFed) read() []byte {
	h.t.Helper()
	buf := make([]byte, readBufSize)
	n, err := readFD(h.b.fd(), buf)
	if err != nil {
		h.t.Fatalf("read: %v", err)
	}
	return buf[:n]
}

// records takes what the queue holds, split into its records.
func (h *handFed) records() [][]byte {
	h.t.Helper()
	var recs [][]byte
	for buf := h.read(); len(buf) > 0; {
		l := unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(buf[12:16]))
		recs, buf = append(recs, buf[:l]), buf[l:]
	}
	return recs
}

// ops returns the ops reported from the n-th on.
func (h *handFed) ops(n int) []opView {
	var v []opView
	for _, op := range h.rec.snapshot()[n:] {
		v = append(v, view(h.root, op))
	}
	return v
}
