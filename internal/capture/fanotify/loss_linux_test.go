package fanotify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/internal/capture"
)

// exhaustFDs lowers this process's descriptor limit to what is open now
// plus a few, then opens descriptors until open fails with EMFILE. It
// returns a function that closes them and restores the limit (also run at
// cleanup). Tests in this package do not run in parallel, so nothing else
// needs a descriptor meanwhile.
func exhaustFDs(t *testing.T) (release func()) {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = uint64(highestFD(t)) + 16
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	var fds []int
	done := false
	release = func() {
		if done {
			return
		}
		done = true
		for _, fd := range fds {
			unix.Close(fd)
		}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
			t.Errorf("restore RLIMIT_NOFILE: %v", err)
		}
	}
	t.Cleanup(release)
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == unix.EMFILE {
			break
		}
		if err != nil {
			release()
			t.Fatalf("open /dev/null: %v", err)
		}
		fds = append(fds, fd)
		if len(fds) > 1<<16 {
			release()
			t.Fatal("no EMFILE after 65536 descriptors")
		}
	}
	return release
}

// highestFD is the highest descriptor open in this process.
func highestFD(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	hi := 0
	for _, e := range ents {
		var n int
		if _, err := fmt.Sscan(e.Name(), &n); err == nil && n > hi {
			hi = n
		}
	}
	return hi
}

// grabFDs starts a goroutine that, like a server's accept loop at its
// limit, keeps trying to open a descriptor and holds what it gets. stop
// ends it and closes them.
func grabFDs() (stop func()) {
	done := make(chan struct{})
	held := make(chan []int)
	go func() {
		var fds []int
		for {
			select {
			case <-done:
				held <- fds
				return
			default:
			}
			if fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
				fds = append(fds, fd)
			}
			runtime.Gosched()
		}
	}()
	return func() {
		close(done)
		for _, fd := range <-held {
			unix.Close(fd)
		}
	}
}

// mknodFiles creates n empty regular files in each dir with mknod, which
// needs no descriptor.
func mknodFiles(t *testing.T, dirs []string, n int) map[string]bool {
	t.Helper()
	files := make(map[string]bool)
	for _, d := range dirs {
		for i := range n {
			p := filepath.Join(d, fmt.Sprintf("f%d", i))
			if err := unix.Mknod(p, unix.S_IFREG|0o644, 0); err != nil {
				t.Fatalf("mknod %s: %v", p, err)
			}
			files[p] = true
		}
	}
	return files
}

// failure makes an injected system call fail with an errno while set.
type failure struct{ errno atomic.Int32 }

func (f *failure) set(e unix.Errno) { f.errno.Store(int32(e)) }
func (f *failure) clear()           { f.errno.Store(0) }
func (f *failure) err() error {
	if e := f.errno.Load(); e != 0 {
		return unix.Errno(e)
	}
	return nil
}

// inject replaces a seam for the rest of the test. Call it before
// startWatcher, so that the watcher stops before the seam is restored.
func inject[F any](t *testing.T, seam *F, f F) {
	t.Helper()
	old := *seam
	*seam = f
	t.Cleanup(func() { *seam = old })
}

// failingHandles makes open_by_handle_at fail while f is set.
func failingHandles(t *testing.T) *failure {
	f := &failure{}
	real := openByHandleAt
	inject(t, &openByHandleAt, func(mount int, h unix.FileHandle, flags int) (int, error) {
		if err := f.err(); err != nil {
			return -1, err
		}
		return real(mount, h, flags)
	})
	return f
}

// failingOpens makes the reader's openat (rescans, /proc) fail while f is
// set.
func failingOpens(t *testing.T) *failure {
	f := &failure{}
	real := openAt
	inject(t, &openAt, func(dirfd int, path string, flags int, mode uint32) (int, error) {
		if err := f.err(); err != nil {
			return -1, err
		}
		return real(dirfd, path, flags, mode)
	})
	return f
}

// preDirs makes n directories under root before a watcher starts: their
// handles are not in its cache, so their children's records need
// open_by_handle_at.
func preDirs(t *testing.T, root string, n int) []string {
	t.Helper()
	var dirs []string
	for i := range n {
		d := filepath.Join(root, fmt.Sprintf("d%d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	return dirs
}

// waitRead waits until the watcher has read n more records than before.
func waitRead(t *testing.T, w *Watcher, before uint64, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%d records read", n), func() bool {
		return w.Stats().EventsRead >= before+uint64(n)
	})
}

// lossReport checks that every file in files was reported by a create op
// (its own or a rescan's), that nothing was reported deleted, and, when a
// loss is wanted, that an overflow op with reason came before the first
// rescan op and a rescan summary followed. Reason "" wants no loss; "*"
// takes either, with any reason. It returns the overflow ops.
func lossReport(t *testing.T, rec *recorder, files map[string]bool, reason string) []*capture.Op {
	t.Helper()
	created := func() map[string]int {
		seen := make(map[string]int)
		for _, op := range rec.snapshot() {
			if op.Kind == capture.KindCreate {
				seen[op.Path]++
			}
		}
		return seen
	}
	missing := func() int {
		seen, n := created(), 0
		for p := range files {
			if seen[p] == 0 {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(10 * time.Second)
	for missing() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := missing(); n > 0 {
		t.Fatalf("%d of %d files were never reported", n, len(files))
	}
	var ovfs []*capture.Op
	sawOverflow, sawSummary := false, false
	for _, op := range rec.snapshot() {
		switch {
		case op.Kind == capture.KindOverflow:
			ovfs = append(ovfs, op)
			if op.Reason == reason || reason == "*" {
				sawOverflow = true
			}
		case op.Kind == capture.KindRescan:
			sawSummary = true
		case op.Kind == capture.KindDelete || op.Kind == capture.KindRmdir:
			t.Errorf("op %v %s: nothing was deleted", op.Kind, op.Path)
		case op.Rescan && !sawOverflow:
			t.Errorf("rescan op %v %s before an overflow op with reason %q", op.Kind, op.Path, reason)
		}
	}
	seen := created()
	for p := range files {
		if seen[p] != 1 {
			t.Errorf("%s reported %d times, want 1", p, seen[p])
		}
	}
	if reason == "*" {
		if len(ovfs) > 0 && !sawSummary {
			t.Errorf("no rescan summary after the loss")
		}
		return ovfs
	}
	if reason == "" {
		if len(ovfs) > 0 {
			t.Errorf("overflow op with reason %q, want none: nothing had to be lost", ovfs[0].Reason)
		}
		return ovfs
	}
	if !sawOverflow {
		t.Errorf("no overflow op with reason %q (overflow ops: %d)", reason, len(ovfs))
	}
	if !sawSummary {
		t.Errorf("no rescan summary after the loss")
	}
	return ovfs
}

// TestFDExhaustionNotSilent: with the process's descriptors used up (as
// idle connections did to the daemon), records in directories whose handle
// is not cached need a descriptor to be resolved. With the reader's spare
// descriptor nothing is lost; without it, the records are lost but not
// silently: an fs.overflow with reason "emfile" comes, and the rescan after
// it (which cannot read the tree either until descriptors are free again,
// and then must not report the files gone) reports them.
func TestFDExhaustionNotSilent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reserve bool
		compete bool // another goroutine grabs every descriptor that comes free
		reason  string
	}{
		{"reserve", true, false, ""},
		{"no reserve", false, false, capture.ReasonEMFILE},
		{"reserve, competing", true, true, "*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := tmpfsRoot(t)
			dirs := preDirs(t, root, 8)
			w, rec := startWatcher(t, Options{Root: root, RescanBackoff: 100 * time.Millisecond, Logger: testLogger(t)})
			if !tc.reserve {
				w.Pause() // the reader holds nothing while paused
				w.t.fds.disabled = true
				w.Resume()
			}
			release := exhaustFDs(t)
			stop := func() {}
			if tc.compete {
				stop = grabFDs()
			}
			read := w.Stats().EventsRead
			files := mknodFiles(t, dirs, 50)
			waitRead(t, w, read, len(files))
			time.Sleep(150 * time.Millisecond) // a rescan or two fail meanwhile
			stop()
			release()
			ovfs := lossReport(t, rec, files, tc.reason)
			s := w.Stats()
			if tc.reserve && !tc.compete && s.ReserveUsed == 0 {
				t.Errorf("Stats.ReserveUsed = 0, want > 0: the spare descriptor was never needed")
			}
			if !tc.reserve {
				if s.LostRecords == 0 || s.HandleErrors == 0 || s.Losses[capture.ReasonEMFILE] == 0 {
					t.Errorf("Stats: lost records %d, handle errors %d, losses %v; want all counted", s.LostRecords, s.HandleErrors, s.Losses)
				}
				var n int64
				for _, op := range ovfs {
					n += op.Count
				}
				if n == 0 {
					t.Errorf("overflow ops count no lost records")
				}
			}
			t.Logf("stats: reserve used %d, lost %d, losses %v, rescans %d, rescan errors %d", s.ReserveUsed, s.LostRecords, s.Losses, s.Rescans, s.RescanErrors)
		})
	}
}

// TestResolveErrorsReported injects each error open_by_handle_at can give:
// one that says the directory was deleted is not a loss; any other is
// reported as an overflow with its reason, and the rescan reports the
// files.
func TestResolveErrorsReported(t *testing.T) {
	for _, tc := range []struct {
		errno  unix.Errno
		reason string // "": not a loss
	}{
		{unix.EMFILE, capture.ReasonEMFILE},
		{unix.ENFILE, capture.ReasonENFILE},
		{unix.ENOMEM, capture.ReasonENOMEM},
		{unix.EIO, capture.ReasonResolve},
		{unix.ESTALE, ""},
	} {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			fail := failingHandles(t)
			root := tmpfsRoot(t)
			dirs := preDirs(t, root, 4)
			w, rec := startWatcher(t, Options{Root: root, RescanBackoff: 100 * time.Millisecond, Logger: testLogger(t)})
			fail.set(tc.errno)
			read := w.Stats().EventsRead
			files := mknodFiles(t, dirs, 25)
			waitRead(t, w, read, len(files))
			fail.clear()
			s := w.Stats()
			if tc.reason == "" {
				if s.Unresolved < uint64(len(files)) || s.HandleStale == 0 {
					t.Errorf("Stats: unresolved %d, stale %d; want %d records taken for a deleted directory's", s.Unresolved, s.HandleStale, len(files))
				}
				time.Sleep(200 * time.Millisecond)
				for _, op := range rec.snapshot() {
					if op.Kind == capture.KindOverflow {
						t.Errorf("overflow op (reason %q) for a deleted directory's records", op.Reason)
					}
				}
				return
			}
			ovfs := lossReport(t, rec, files, tc.reason)
			if got := ovfs[0]; got.Reason != tc.reason || got.Count <= 0 || got.Path != w.Root() || !got.IsDir {
				t.Errorf("overflow op: reason %q count %d path %s; want %q, > 0, %s", got.Reason, got.Count, got.Path, tc.reason, w.Root())
			}
			if s := w.Stats(); s.Losses[tc.reason] == 0 || s.HandleErrors == 0 {
				t.Errorf("Stats: losses %v, handle errors %d; want %q counted", s.Losses, s.HandleErrors, tc.reason)
			}
		})
	}
}

// TestRescanUnreadableNoFalseDeletes: a rescan that cannot open directories
// must not report what they hold as deleted; it announces another rescan
// instead, which reports the files once the tree can be read.
func TestRescanUnreadableNoFalseDeletes(t *testing.T) {
	handles := failingHandles(t)
	opens := failingOpens(t)
	root := tmpfsRoot(t)
	dirs := preDirs(t, root, 4)
	// Files the index holds from the start: a rescan that cannot read
	// their directories must not report them gone.
	mknodFiles(t, dirs[:2], 10)
	w, rec := startWatcher(t, Options{Root: root, RescanBackoff: 100 * time.Millisecond, Logger: testLogger(t)})
	handles.set(unix.EMFILE)
	opens.set(unix.EMFILE)
	read := w.Stats().EventsRead
	files := make(map[string]bool)
	for _, d := range dirs {
		p := filepath.Join(d, "new")
		if err := unix.Mknod(p, unix.S_IFREG|0o644, 0); err != nil {
			t.Fatal(err)
		}
		files[p] = true
	}
	waitRead(t, w, read, len(files))
	waitFor(t, 10*time.Second, "a rescan that could not read the tree", func() bool { return w.Stats().RescanErrors > 0 })
	handles.clear()
	opens.clear()
	lossReport(t, rec, files, capture.ReasonEMFILE)
	s := w.Stats()
	if s.Rescans < 2 {
		t.Errorf("Stats.Rescans = %d, want >= 2 (one failed, one read the tree)", s.Rescans)
	}
}

// TestReadErrorsReported: a read of the kernel queue that fails for want of
// a resource is an overflow with its reason, then a rescan, and the reader
// goes on; any other failure is an overflow with reason "read", and Run
// returns the error.
func TestReadErrorsReported(t *testing.T) {
	fail := &failure{}
	once := atomic.Bool{}
	real := readFD
	inject(t, &readFD, func(fd int, p []byte) (int, error) {
		if err := fail.err(); err != nil && once.CompareAndSwap(false, true) {
			return -1, err
		}
		return real(fd, p)
	})

	t.Run("transient", func(t *testing.T) {
		root := tmpfsRoot(t)
		w, rec := startWatcher(t, Options{Root: root, RescanBackoff: 100 * time.Millisecond, Logger: testLogger(t)})
		once.Store(false)
		fail.set(unix.ENOMEM)
		t.Cleanup(fail.clear)
		files := mknodFiles(t, []string{root}, 20)
		waitFor(t, 5*time.Second, "the injected read error", once.Load)
		lossReport(t, rec, files, capture.ReasonENOMEM)
		if s := w.Stats(); s.Losses[capture.ReasonENOMEM] == 0 {
			t.Errorf("Stats.Losses = %v, want enomem counted", s.Losses)
		}
	})

	t.Run("fatal", func(t *testing.T) {
		root := tmpfsRoot(t)
		rec := &recorder{}
		w, err := New(Options{Root: root, Sink: rec, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		once.Store(false)
		fail.set(unix.EIO)
		t.Cleanup(fail.clear)
		errc := make(chan error, 1)
		go func() { errc <- w.Run(context.Background()) }()
		mknodFiles(t, []string{root}, 1)
		select {
		case err := <-errc:
			if !errors.Is(err, unix.EIO) {
				t.Errorf("Run = %v, want EIO", err)
			}
		case <-time.After(10 * time.Second):
			w.Close()
			<-errc
			t.Fatal("Run did not return after a fatal read error")
		}
		var got []string
		for _, op := range rec.snapshot() {
			if op.Kind == capture.KindOverflow {
				got = append(got, op.Reason)
			}
		}
		if len(got) != 1 || got[0] != capture.ReasonRead {
			t.Errorf("overflow reasons %q, want [%q]", got, capture.ReasonRead)
		}
	})
}

// TestInotifyWatchFailureReported: in the inotify fallback a directory
// that cannot be watched (the watch limit) loses its changes: that is an
// overflow with reason "watch", and the rescan after it watches the
// directory, so later changes in it are reported directly.
func TestInotifyWatchFailureReported(t *testing.T) {
	fail := &failure{}
	real := addWatch
	inject(t, &addWatch, func(fd int, p string, mask uint32) (int, error) {
		if err := fail.err(); err != nil {
			return -1, err
		}
		return real(fd, p, mask)
	})
	root := tmpfsRoot(t)
	w, rec := startWatcher(t, Options{Root: root, ForceInotify: true, RescanBackoff: 100 * time.Millisecond, Logger: testLogger(t)})
	fail.set(unix.ENOSPC)
	sub := filepath.Join(root, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "an overflow op", func() bool { return w.Stats().Losses[capture.ReasonWatch] > 0 })
	fail.clear()
	waitFor(t, 5*time.Second, "a rescan that watches the directory", func() bool { return w.Stats().Watches == 2 })
	// The rescan watches sub when it comes to it and reads it after: let
	// it end (it holds the reader's gate) before creating in sub.
	w.Pause()
	w.Resume()
	f := filepath.Join(sub, "later")
	if err := unix.Mknod(f, unix.S_IFREG|0o644, 0); err != nil {
		t.Fatal(err)
	}
	lossReport(t, rec, map[string]bool{f: true}, capture.ReasonWatch)
	for _, op := range rec.snapshot() {
		if op.Path == f && op.Rescan {
			t.Errorf("%s reported by a rescan; want its own op (the directory is watched after the rescan)", f)
		}
	}
}

// TestLossesCoalesced: losses of one reason are reported once until the
// rescan they announce; what is lost meanwhile is reported right before
// that rescan, with its count. Malformed records are losses too.
func TestLossesCoalesced(t *testing.T) {
	rec := &recorder{}
	w := &Watcher{root: "/watched", log: slog.New(slog.DiscardHandler)}
	w.t = newTracker(w.root, rec, &w.c, 0, w.log)
	f := &fanBackend{w: w, res: newResolver(-1, nil, w.t, &w.c), procs: newProcCache(nil, &w.c)}
	bad := func() []byte { // a record whose info record is cut short
		var b buf
		b.event(maskCreate, 1, []byte{infoDFIDName, 0, 8, 0})
		return b.b
	}
	f.handle(bad(), time.Now())
	f.handle(bad(), time.Now())
	f.handle([]byte{1, 2, 3}, time.Now()) // a buffer error
	ops := rec.snapshot()
	if len(ops) != 1 || ops[0].Kind != capture.KindOverflow || ops[0].Reason != capture.ReasonParse || ops[0].Count != 1 {
		t.Fatalf("ops %v, want one overflow op, reason parse, count 1", views(ops))
	}
	if w.t.rescanPending().IsZero() {
		t.Fatalf("no rescan scheduled after a loss")
	}
	w.t.root = t.TempDir() // the rescan walks an empty tree
	w.t.rescan()
	ops = rec.snapshot()
	if len(ops) != 3 || ops[1].Kind != capture.KindOverflow || ops[1].Reason != capture.ReasonParse || ops[1].Count != 2 || ops[2].Kind != capture.KindRescan {
		t.Fatalf("ops %v, want overflow, overflow (count 2), rescan", views(ops))
	}
	f.handle(bad(), time.Now()) // a new round
	if ops = rec.snapshot(); len(ops) != 4 || ops[3].Reason != capture.ReasonParse {
		t.Fatalf("ops %v, want a new overflow op after the rescan", views(ops))
	}
	if s := w.Stats(); s.Losses[capture.ReasonParse] != 3 || s.LostRecords != 4 || s.ParseErrors != 4 {
		t.Errorf("Stats: losses %v, lost %d, parse errors %d; want parse 3, 4, 4", s.Losses, s.LostRecords, s.ParseErrors)
	}
}

func views(ops []*capture.Op) []string {
	var out []string
	for _, op := range ops {
		out = append(out, fmt.Sprintf("%v(%s,%d)", op.Kind, op.Reason, op.Count))
	}
	return out
}
