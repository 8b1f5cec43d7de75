package fanotify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/internal/capture"
)

const inotifyMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE |
	unix.IN_ATTRIB | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DONT_FOLLOW |
	unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK

// inBackend is the inotify fallback: one watch per directory, added as
// directories appear. inotify reports no pid, so ops carry no process
// context.
type inBackend struct {
	w    *Watcher
	ifd  int
	wds  map[int32]string // watch descriptor → directory path
	byP  map[string]int32 // directory path → watch descriptor
	from *pendingMove     // an IN_MOVED_FROM waiting for its IN_MOVED_TO
}

// moveGrace is how long an IN_MOVED_FROM waits for its IN_MOVED_TO once
// the queue is empty. The kernel queues the two one after the other, not
// at once (inotify(7)): a read between them finds the first alone, and
// taking the queue's emptiness then as "moved out of the tree" would split
// a rename into a delete and a create. A move out is reported this much
// later.
const moveGrace = 20 * time.Millisecond

type pendingMove struct {
	cookie uint32
	path   string
	dir    bool
	raw    uint64
	idle   time.Time // when the queue was first found empty behind it
}

func newInotify(w *Watcher) (*inBackend, error) {
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	b := &inBackend{w: w, ifd: ifd, wds: make(map[int32]string), byP: make(map[string]int32)}
	if err := b.watch(w.root); err != nil {
		unix.Close(ifd)
		return nil, err
	}
	// Index the tree and watch every directory in one walk.
	t := w.t
	t.sawDir = b.rewatch
	var st unix.Stat_t
	if unix.Lstat(t.root, &st) == nil {
		t.index[t.root] = entryOf(&st)
	}
	t.walk(t.root, func(p string, st *unix.Stat_t) {
		t.index[p] = entryOf(st)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := b.watch(p); err != nil && !vanished(errors.Unwrap(err)) {
				w.log.Warn("fanotify: inotify watch failed", "path", p, "err", err)
				t.lose(capture.ReasonOf(err, capture.ReasonWatch), 0) // reported when Run starts
			}
		}
	}, b.walkFailed)
	return b, nil
}

// walkFailed notes a directory the walk could not read: what is in it is
// not watched, so its changes are lost until a rescan.
func (b *inBackend) walkFailed(p string, err error) {
	b.w.log.Warn("fanotify: cannot read part of the watched tree", "path", p, "err", err)
	b.w.t.lose(capture.ReasonOf(err, capture.ReasonWatch), 0)
}

func (b *inBackend) watch(dir string) error {
	wd, err := addWatch(b.ifd, dir, inotifyMask)
	if err != nil {
		return fmt.Errorf("inotify_add_watch %s: %w", dir, err)
	}
	if old, ok := b.wds[int32(wd)]; ok {
		delete(b.byP, old) // the same directory under a new name
	} else {
		b.w.c.watches.Add(1)
	}
	b.wds[int32(wd)] = dir
	b.byP[dir] = int32(wd)
	return nil
}

func (b *inBackend) fd() int { return b.ifd }
func (b *inBackend) close()  { unix.Close(b.ifd) }

// idle ends a catch-up window and flushes an unpaired IN_MOVED_FROM once
// the queue has been empty behind it for moveGrace (its partner is not
// coming: the object left the tree); until then it asks to be called again.
func (b *inBackend) idle(now time.Time) time.Duration {
	b.w.t.idle()
	if m := b.from; m != nil {
		if m.idle.IsZero() {
			m.idle = now
		}
		if wait := moveGrace - now.Sub(m.idle); wait > 0 {
			return wait
		}
		b.flushMove()
	}
	return 0
}

func (b *inBackend) flushMove() {
	if m := b.from; m != nil {
		b.from = nil
		b.w.t.rename(m.path, "", m.dir, nil, m.raw) // moved out of the tree
		if m.dir {
			b.unwatch(m.path)
		}
	}
}

func (b *inBackend) handle(buf []byte, now time.Time) {
	defer b.w.t.flush()
	for len(buf) >= unix.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(buf[0:4]))
		mask := binary.NativeEndian.Uint32(buf[4:8])
		cookie := binary.NativeEndian.Uint32(buf[8:12])
		n := binary.NativeEndian.Uint32(buf[12:16])
		if uint64(n) > uint64(len(buf)-unix.SizeofInotifyEvent) {
			b.w.c.parseErrors.Add(1)
			b.w.t.lose(capture.ReasonParse, 1)
			return
		}
		name := buf[unix.SizeofInotifyEvent : unix.SizeofInotifyEvent+int(n)]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		buf = buf[unix.SizeofInotifyEvent+int(n):]
		b.w.c.eventsRead.Add(1)
		b.event(wd, mask, cookie, name)
	}
}

func (b *inBackend) event(wd int32, mask, cookie uint32, name []byte) {
	t := b.w.t
	raw := uint64(mask)
	if mask&unix.IN_Q_OVERFLOW != 0 {
		b.flushMove()
		t.overflow(raw)
		return
	}
	dirPath, ok := b.wds[wd]
	if mask&unix.IN_IGNORED != 0 {
		if ok {
			delete(b.wds, wd)
			if b.byP[dirPath] == wd {
				delete(b.byP, dirPath)
			}
			b.w.c.watches.Add(^uint64(0))
		}
		return
	}
	if !ok {
		return // a watch removed by unwatch; its last events are stale
	}
	if len(name) == 0 {
		// An event on a watched directory itself: its parent's watch
		// reports it too, except for Root.
		if dirPath != t.root || mask&unix.IN_ATTRIB == 0 {
			return
		}
	}
	path := join(dirPath, name)
	dir := mask&unix.IN_ISDIR != 0

	if b.from != nil && !(mask&unix.IN_MOVED_TO != 0 && cookie == b.from.cookie) {
		b.flushMove()
	}
	switch {
	case mask&unix.IN_MOVED_FROM != 0:
		b.from = &pendingMove{cookie: cookie, path: path, dir: dir, raw: raw}
		return
	case mask&unix.IN_MOVED_TO != 0:
		if m := b.from; m != nil {
			b.from = nil
			if dir {
				b.moveWatches(m.path, path)
			}
			t.rename(m.path, path, dir, nil, raw|m.raw)
			return
		}
		t.rename("", path, dir, nil, raw) // moved into the tree
		if dir {
			b.addTree(path, false)
		}
		return
	}
	ch := change{
		path:       path,
		dir:        dir,
		create:     mask&unix.IN_CREATE != 0,
		delete:     mask&unix.IN_DELETE != 0,
		modify:     mask&unix.IN_MODIFY != 0,
		closeWrite: mask&unix.IN_CLOSE_WRITE != 0,
		attrib:     mask&unix.IN_ATTRIB != 0,
		raw:        raw,
	}
	t.apply(&ch, nil)
	if ch.create && dir {
		b.addTree(path, true)
	}
}

// addTree watches a new directory and everything below it. With report set,
// objects found in it (created before the watch existed) are reported as
// creates; their own events, if any follow, are then duplicates and are
// suppressed by the index.
func (b *inBackend) addTree(dir string, report bool) {
	if err := b.watch(dir); err != nil {
		if !vanished(errors.Unwrap(err)) {
			b.watchFailed(err)
		}
		return // vanished already; its delete follows
	}
	t := b.w.t
	t.walk(dir, func(p string, st *unix.Stat_t) {
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if isDir {
			if err := b.watch(p); err != nil && !vanished(errors.Unwrap(err)) {
				b.watchFailed(err)
			}
		}
		if !report {
			t.index[p] = entryOf(st)
			return
		}
		if e := t.index[p]; e != nil && e.ino == st.Ino {
			return
		}
		ch := change{path: p, dir: isDir, create: true, scanned: true}
		t.apply(&ch, nil)
		if e := t.index[p]; e != nil {
			e.rescanned = true // its own IN_CLOSE_WRITE may follow: a duplicate if nothing changed
		}
	}, b.walkFailed)
}

// rewatch watches a directory a rescan found that has no watch: one made
// while its events were lost, or one whose watch failed before.
func (b *inBackend) rewatch(p string) {
	if _, ok := b.byP[p]; ok {
		return
	}
	if err := b.watch(p); err != nil && !vanished(errors.Unwrap(err)) {
		b.watchFailed(err)
	}
}

// watchFailed notes a directory that could not be watched (the watch limit,
// fs.inotify.max_user_watches, or no memory): its changes are not seen.
// The loss is reported, and the rescan that follows reports what the
// directory holds then; changes in it after that are not seen either, until
// a watch can be added.
func (b *inBackend) watchFailed(err error) {
	b.w.log.Warn("fanotify: inotify watch failed", "err", err)
	b.w.t.lose(capture.ReasonOf(err, capture.ReasonWatch), 0)
}

// unwatch removes the watches on dir and below (it left the tree).
func (b *inBackend) unwatch(dir string) {
	prefix := dir + "/"
	for wd, p := range b.wds {
		if p == dir || strings.HasPrefix(p, prefix) {
			unix.InotifyRmWatch(b.ifd, uint32(wd)) // the IN_IGNORED that follows finds no entry
			delete(b.wds, wd)
			delete(b.byP, p)
			b.w.c.watches.Add(^uint64(0))
		}
	}
}

// moveWatches renames the watched directories below oldPath.
func (b *inBackend) moveWatches(oldPath, newPath string) {
	prefix := oldPath + "/"
	for wd, p := range b.wds {
		if p == oldPath || strings.HasPrefix(p, prefix) {
			np := newPath + p[len(oldPath):]
			delete(b.byP, p)
			b.wds[wd] = np
			b.byP[np] = wd
		}
	}
}
