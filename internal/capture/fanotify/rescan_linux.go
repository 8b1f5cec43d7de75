package fanotify

import (
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
)

// walk calls fn for every object below dir (not dir itself), parents before
// children. It does not follow symbolic links and does not cross into other
// file systems. An entry that vanishes mid-walk is skipped; a directory or
// entry that cannot be read for another reason (no descriptor, no memory, an
// I/O error) is passed to fail, if set, and skipped with what is below it.
func (t *tracker) walk(dir string, fn func(p string, st *unix.Stat_t), fail func(p string, err error)) {
	var dirSt unix.Stat_t
	if err := unix.Lstat(dir, &dirSt); err != nil {
		if !vanished(err) && fail != nil {
			fail(dir, err)
		}
		return
	}
	t.walkDev(dir, dirSt.Dev, fn, fail)
}

// vanished reports whether err says a path is gone or no longer a
// directory: a change the walk races with, not a failure.
func vanished(err error) bool {
	return err == unix.ENOENT || err == unix.ENOTDIR || err == unix.ELOOP || err == unix.ESTALE
}

func (t *tracker) walkDev(dir string, dev uint64, fn func(p string, st *unix.Stat_t), fail func(p string, err error)) {
	fd, err := t.fds.open(func() (int, error) {
		return openAt(unix.AT_FDCWD, dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	})
	if err != nil {
		if !vanished(err) && fail != nil {
			fail(dir, err)
		}
		return
	}
	names, err := readDirNames(fd)
	if err != nil && fail != nil {
		t.fds.close(fd)
		fail(dir, err)
		return
	}
	var subdirs []string
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if !vanished(err) && fail != nil {
				fail(dir+"/"+name, err)
			}
			continue
		}
		p := dir + "/" + name
		fn(p, &st)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Dev == dev {
			subdirs = append(subdirs, p)
		}
	}
	t.fds.close(fd)
	for _, p := range subdirs {
		t.walkDev(p, dev, fn, fail)
	}
}

// readDirNames returns the entry names of the open directory fd, without
// "." and "..", sorted. On an error the names are incomplete.
func readDirNames(fd int) ([]string, error) {
	var names []string
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if err == unix.ENOENT { // the directory was removed: it is empty
				err = nil
			}
			return names, err
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	slices.Sort(names)
	return names, nil
}

// buildIndex indexes the whole tree under Root (once, at start). A part
// that cannot be read is logged: its objects are unknown to the index, so
// the first records about them are reported as creates.
func (t *tracker) buildIndex() {
	var st unix.Stat_t
	if unix.Lstat(t.root, &st) == nil {
		t.index[t.root] = entryOf(&st)
	}
	t.walk(t.root, func(p string, st *unix.Stat_t) { t.index[p] = entryOf(st) }, t.logWalkError)
}

func (t *tracker) logWalkError(p string, err error) {
	t.log.Warn("fanotify: cannot read part of the watched tree", "path", p, "err", err)
}

// rescan walks Root, compares what it finds with the index and emits the
// differences as ops with Rescan set, then one KindRescan summary. It runs
// on the reader goroutine, which drains the kernel queue into memory every
// 256 entries meanwhile and processes that after the rescan (see doc.go,
// "Overflow and rescan").
func (t *tracker) rescan() {
	start := time.Now()
	t.rescanDue = time.Time{}
	t.c.rescans.Add(1)
	// What was lost since the overflow ops that announced this rescan is
	// reported now, before the rescan's ops: the rescan covers it too.
	t.lossesBeforeRescan()

	// Parts of the tree the walk could not read: what the index holds
	// below them is not reported gone (it may well be there), and another
	// rescan is announced.
	var failed []string
	var failErr error
	fail := func(p string, err error) {
		failed = append(failed, p)
		failErr = err
		t.c.rescanErrors.Add(1)
		t.log.Warn("fanotify: rescan cannot read part of the tree", "path", p, "err", err)
	}
	unread := func(p string) bool {
		for _, f := range failed {
			if p == f || (len(p) > len(f) && p[len(f)] == '/' && strings.HasPrefix(p, f)) {
				return true
			}
		}
		return false
	}

	seen := make(map[string]struct{}, len(t.index))
	var changes int64
	emit := func(k capture.Kind, p string, st *unix.Stat_t, dir bool) {
		op := t.newOp(k, p, dir, nil, 0)
		op.Rescan = true
		if st != nil {
			setStat(op, st, !dir)
			if k == capture.KindSymlink {
				op.Target = readlink(p)
			}
		}
		changes++
		t.emit(op)
	}
	created := func(p string, st *unix.Stat_t) {
		e := entryOf(st)
		e.rescanned = true
		t.index[p] = e
		switch {
		case e.dir:
			emit(capture.KindMkdir, p, st, true)
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			emit(capture.KindSymlink, p, st, false)
		default:
			emit(capture.KindCreate, p, st, false)
			if st.Size > 0 {
				emit(capture.KindWrite, p, st, false)
			}
		}
	}

	seen[t.root] = struct{}{}
	var gone []string
	walked := 0
	t.walk(t.root, func(p string, st *unix.Stat_t) {
		if walked++; walked%256 == 0 && t.drain != nil {
			t.drain()
		}
		seen[p] = struct{}{}
		if t.sawDir != nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			t.sawDir(p)
		}
		e := t.index[p]
		switch {
		case e == nil:
			created(p, st)
		case e.ino != st.Ino || e.dir != (st.Mode&unix.S_IFMT == unix.S_IFDIR):
			// Replaced by another object: the old one (and, for a
			// directory, its indexed children, deepest first) went away.
			if e.dir {
				prefix := p + "/"
				var kids []string
				for q := range t.index {
					if strings.HasPrefix(q, prefix) {
						kids = append(kids, q)
					}
				}
				slices.Sort(kids)
				for i := len(kids) - 1; i >= 0; i-- {
					t.rescanGone(kids[i], &changes)
				}
			}
			t.rescanGone(p, &changes)
			created(p, st)
		case !e.dir && (e.size != st.Size || e.mtime != st.Mtim.Nano()):
			ne := entryOf(st)
			ne.rescanned = true
			t.index[p] = ne
			emit(capture.KindWrite, p, st, false)
		}
	}, fail)
	for p := range t.index {
		if _, ok := seen[p]; !ok && !unread(p) {
			gone = append(gone, p)
		}
	}
	// Children before their parents.
	slices.Sort(gone)
	for i := len(gone) - 1; i >= 0; i-- {
		t.rescanGone(gone[i], &changes)
	}
	sum := t.newOp(capture.KindRescan, t.root, true, nil, 0)
	sum.Count = changes
	t.emit(sum)
	t.lastRescan = time.Now() // the backoff gap runs from the end of a rescan
	t.log.Info("fanotify: rescan after overflow", "root", t.root, "changes", changes,
		"indexed", len(t.index), "took", t.lastRescan.Sub(start), "next_gap", t.backoff)
	if failed != nil {
		// What changed in the unread parts is still unreported: lost
		// until a later rescan reads them.
		t.lose(capture.ReasonOf(failErr, capture.ReasonRescan), 0)
		t.reportLosses()
	}
}

// rescanGone emits the delete (or rmdir) of an indexed path a rescan did
// not find, and drops it from the index.
func (t *tracker) rescanGone(p string, changes *int64) {
	e := t.index[p]
	if e == nil {
		return
	}
	delete(t.index, p)
	if t.gone == nil {
		t.gone = make(map[string]struct{})
	}
	t.gone[p] = struct{}{}
	k := capture.KindDelete
	if e.dir {
		k = capture.KindRmdir
	}
	op := t.newOp(k, p, e.dir, nil, 0)
	op.Rescan = true
	op.Inode, op.Mode = e.ino, e.mode
	op.Known |= event.HasInode | event.HasMode
	*changes++
	t.emit(op)
}
