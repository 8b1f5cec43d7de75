package fanotify

import (
	"bytes"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
)

// entry is what the index knows about one path under Root.
type entry struct {
	ino       uint64
	size      int64
	mtime     int64 // ns since the epoch
	mode      uint32
	dir       bool
	rescanned bool // set by a rescan or directory scan; the next event confirming it is a duplicate
}

func entryOf(st *unix.Stat_t) *entry {
	e := statEntry(st)
	return &e
}

func statEntry(st *unix.Stat_t) entry {
	return entry{
		ino:   st.Ino,
		size:  st.Size,
		mtime: st.Mtim.Nano(),
		mode:  st.Mode,
		dir:   st.Mode&unix.S_IFMT == unix.S_IFDIR,
	}
}

// actor is the process context of an event.
type actor struct {
	known    event.Fields
	pid      int32
	uid, gid uint32
	comm     string
	exe      string
}

// change is one kernel record about one object at one path, with the
// operations the record merged (see doc.go for how they are ordered).
type change struct {
	path       string
	dir        bool
	create     bool
	delete     bool
	modify     bool
	closeWrite bool
	attrib     bool
	fid        []byte // the object's file identifier (fanotify), or nil
	raw        uint64
	own        bool // made by this process: the shadow of a FUSE operation
	// absent: the name is known to be free (a listing of its directory
	// taken after the record was queued does not hold it); no lstat.
	absent bool
	// scanned: a create found by a directory scan, not a record; a file
	// with data then gets a write too. Whether it has data is decided on
	// apply's own lstat, the one the index keeps: decided on the scan's,
	// a write between the two would be in the index, and so taken for
	// reported, without having been.
	scanned bool
}

// selfPID is this process: its records are the shadows of the operations
// of a FUSE mount it serves.
var selfPID = int32(os.Getpid())

// tracker turns changes into ops, keeps the index of the tree up to date
// and runs rescans. It is owned by the reader goroutine: none of its methods
// may be called concurrently.
type tracker struct {
	root string
	sink capture.Sink
	c    *counters
	log  *slog.Logger

	index map[string]*entry
	dirty map[string]struct{} // objects (fid or path) modified since their last close-write

	// gone holds the paths a rescan reported deleted, until the kernel
	// queue is next seen empty: records read in that window may describe
	// deletes the rescan already reported, and those duplicates are
	// suppressed. (Duplicate creates and writes are recognised by the index
	// itself.)
	gone map[string]struct{}

	// held are rmdir ops of merged mkdir+rmdir records, emitted once a
	// record about something outside the directory comes, or at the end of
	// the read batch: the records of the directory's children were queued
	// after the merged record, and come right after it.
	held []*capture.Op

	// drain, if set, is called now and then during a rescan's walk to move
	// the kernel queue into memory (see Watcher.drain).
	drain func()

	// sawDir, if set, is called for every directory a rescan walks (the
	// inotify fallback watches those it does not watch yet).
	sawDir func(p string)

	// fds lends the reader a descriptor when the process has none left.
	fds *fdReserve

	// losses are records lost since the last rescan, by reason (see lose);
	// lossDue says some are not reported yet.
	losses  map[string]*loss
	lossDue bool

	base, backoff time.Duration
	lastRescan    time.Time
	rescanDue     time.Time // zero: no rescan pending
}

// loss is what lose accumulated for one reason since the last rescan.
type loss struct {
	n         int64 // records lost and not yet reported in an op
	due       bool  // lost since the last report
	announced bool  // an overflow op of this reason went out; its rescan is pending
}

func newTracker(root string, sink capture.Sink, c *counters, backoff time.Duration, log *slog.Logger) *tracker {
	if backoff <= 0 {
		backoff = defaultRescanBackoff
	}
	return &tracker{
		root:    root,
		log:     log,
		sink:    sink,
		c:       c,
		index:   make(map[string]*entry),
		dirty:   make(map[string]struct{}),
		base:    backoff,
		backoff: backoff,
	}
}

// inside reports whether p is Root or below it.
func (t *tracker) inside(p string) bool {
	return p == t.root || (len(p) > len(t.root) && p[len(t.root)] == '/' && strings.HasPrefix(p, t.root))
}

func (t *tracker) emit(op *capture.Op) {
	op.Boundary = event.BoundaryKernel
	if op.Time.IsZero() {
		op.Time = time.Now()
	}
	t.c.ops[op.Kind].Add(1)
	t.c.opsTotal.Add(1)
	if op.Rescan {
		t.c.rescanFound.Add(1)
	}
	t.sink.Emit(op)
}

func (t *tracker) newOp(k capture.Kind, path string, dir bool, a *actor, raw uint64) *capture.Op {
	op := &capture.Op{Kind: k, Path: path, IsDir: dir, Raw: raw}
	if a != nil {
		op.Known = a.known
		op.PID, op.UID, op.GID, op.Comm, op.Exe = a.pid, a.uid, a.gid, a.comm, a.exe
	}
	return op
}

func setStat(op *capture.Op, st *unix.Stat_t, size bool) {
	op.Inode, op.Mode = st.Ino, st.Mode
	op.Known |= event.HasInode | event.HasMode
	if size {
		op.Size = st.Size
		op.Known |= event.HasSize
	}
}

// sameObject reports whether path now names the object fid identifies.
func sameObject(path string, fid []byte) bool {
	typ, h, ok := handleOf(fid)
	if !ok {
		return false
	}
	fh, _, err := unix.NameToHandleAt(unix.AT_FDCWD, path, atHandleFID)
	if err != nil {
		return false
	}
	return fh.Type() == typ && bytes.Equal(fh.Bytes(), h)
}

// atHandleFID asks name_to_handle_at for a file identifier as fanotify
// reports it (AT_HANDLE_FID, linux 6.5).
const atHandleFID = 0x200

// apply turns one change into ops in a sensible order and updates the index.
// See doc.go, "Merged records", for the rules.
func (t *tracker) apply(ch *change, a *actor) {
	if ch.modify && !ch.create && !ch.delete && !ch.closeWrite && !ch.attrib {
		// A write in progress: remember it for the close, nothing to stat.
		if !ch.dir {
			t.setDirty(ch)
		}
		return
	}
	t.release(ch.path)
	// A lone delete is about an object that left the name: whatever is
	// there now came after, and a later record reports it. (Were this
	// record taken to be "after", the index would keep the path, and a
	// later create of it would pass for a duplicate.)
	var st unix.Stat_t
	exists := !ch.absent && !(ch.delete && !ch.create) && t.lstat(ch.path, &st)
	old := t.index[ch.path]
	if ch.scanned && exists && !ch.dir && st.Size > 0 {
		ch.modify, ch.closeWrite = true, true
	}

	// Is the object the record is about still at this name? Only a
	// dirent record needs to know (the name may hold a successor by now).
	after := exists
	//
	// Not asked for a shadow's lone create: the FUSE operation it merges
	// into reports the kind and context, and the name holding a successor
	// by now (created, removed and created again through the mount
	// within one read) costs at most that successor's shadow, its FUSE
	// event then published alone. It saves a name_to_handle_at per file
	// created through the mount.
	if exists && (ch.create || ch.delete) && !(ch.own && ch.create && !ch.delete) {
		if ch.fid != nil {
			after = sameObject(ch.path, ch.fid)
		} else if ch.delete && !ch.create {
			after = false
		}
	}
	before := old != nil
	if before && after && (ch.create || ch.delete) && old.ino != st.Ino && !(ch.create && ch.delete) {
		before = false // the index held a predecessor that was replaced
	}

	write := false
	if !ch.dir {
		if ch.closeWrite {
			wasDirty := t.takeDirty(ch)
			write = ch.modify || wasDirty
		} else if ch.modify && !ch.delete {
			t.setDirty(ch)
		}
		if ch.delete && !after {
			t.takeDirty(ch)
		}
	}
	if write && old != nil && old.rescanned && exists &&
		old.size == st.Size && old.mtime == st.Mtim.Nano() {
		old.rescanned = false
		t.c.suppressed.Add(1)
		write = false // the rescan reported this content already
	}

	createK, deleteK := capture.KindCreate, capture.KindDelete
	if ch.dir {
		createK, deleteK = capture.KindMkdir, capture.KindRmdir
	}
	var target, linkOf string
	if after && !ch.dir && (ch.create) {
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			createK = capture.KindSymlink
			target = readlink(ch.path)
		case unix.S_IFREG:
			if st.Nlink > 1 {
				if p := t.pathOfInode(st.Ino, ch.path); p != "" {
					createK, linkOf = capture.KindLink, p
				}
			}
		}
	}

	lastDelay := false    // hold back the final rmdir of a merged mkdir+rmdir (see flush)
	stillScanned := false // the index entry stays marked rescanned
	mk := func(k capture.Kind, final bool) {
		op := t.newOp(k, ch.path, ch.dir, a, ch.raw)
		switch {
		case final && after:
			setStat(op, &st, k == capture.KindWrite || k == capture.KindAttrib || k == capture.KindCreate)
			if k == capture.KindSymlink {
				op.Target = target
			}
			if k == capture.KindLink {
				op.OldPath = linkOf
			}
		case k == deleteK && old != nil:
			op.Inode, op.Mode = old.ino, old.mode
			op.Known |= event.HasInode | event.HasMode
		}
		if lastDelay && k == capture.KindRmdir {
			t.held = append(t.held, op)
			return
		}
		t.emit(op)
	}
	tail := func() {
		if write {
			mk(capture.KindWrite, true)
		}
		if ch.attrib {
			mk(capture.KindAttrib, true)
		}
	}

	switch {
	case ch.create && ch.delete:
		firstCreate := capture.KindCreate
		if ch.dir {
			firstCreate = capture.KindMkdir
		}
		switch {
		case !before && !after:
			mk(firstCreate, false)
			tail()
			lastDelay = ch.dir
			mk(deleteK, false)
		case before && after:
			mk(deleteK, false)
			mk(createK, true)
			tail()
		case !before && after:
			mk(firstCreate, false)
			mk(deleteK, false)
			mk(createK, true)
			tail()
		default: // before && !after
			mk(deleteK, false)
			mk(firstCreate, false)
			tail()
			lastDelay = ch.dir
			mk(deleteK, false)
		}
	case ch.create:
		if before && after && old.ino == st.Ino {
			t.c.suppressed.Add(1) // already reported by a rescan or a directory scan
			// The scan reported the content it saw too: unchanged since,
			// the object's own close that may follow is a duplicate as
			// well.
			stillScanned = old.rescanned && old.size == st.Size && old.mtime == st.Mtim.Nano()
			tail()
		} else {
			mk(createK, true)
			tail()
		}
	case ch.delete:
		tail()
		if _, dup := t.gone[ch.path]; dup && !before {
			delete(t.gone, ch.path)
			t.c.suppressed.Add(1) // the rescan reported it gone already
		} else {
			mk(deleteK, false)
		}
	default:
		tail()
	}

	// Bring the index up to date.
	switch {
	case after && old != nil:
		*old = statEntry(&st) // in place: one allocation less per record
		old.rescanned = stillScanned
	case after:
		t.index[ch.path] = entryOf(&st)
	case ch.create || ch.delete:
		if old != nil {
			t.removeSubtree(ch.path)
		}
	}
}

// lstat stats p without following a final symbolic link, counted.
func (t *tracker) lstat(p string, st *unix.Stat_t) bool {
	t.c.lstats.Add(1)
	return lstat(p, st) == nil
}

// The dirty set identifies the object of a change by its file identifier
// when known (fanotify), else by its path (inotify). Looking a []byte key
// up as string(b) does not copy it; only an insert does.

// setDirty notes that ch's object was modified and not yet closed.
func (t *tracker) setDirty(ch *change) {
	if ch.fid == nil {
		t.dirty[ch.path] = struct{}{}
		return
	}
	if _, ok := t.dirty[string(ch.fid)]; !ok {
		t.dirty[string(ch.fid)] = struct{}{}
	}
}

// takeDirty reports whether ch's object was noted dirty, and forgets it.
func (t *tracker) takeDirty(ch *change) bool {
	if ch.fid == nil {
		_, ok := t.dirty[ch.path]
		delete(t.dirty, ch.path)
		return ok
	}
	if _, ok := t.dirty[string(ch.fid)]; !ok {
		return false
	}
	delete(t.dirty, string(ch.fid))
	return true
}

// pathOfInode finds another indexed path with inode ino (for hard links).
func (t *tracker) pathOfInode(ino uint64, not string) string {
	for p, e := range t.index {
		if e.ino == ino && p != not && !e.dir {
			return p
		}
	}
	return ""
}

// removeSubtree drops p and everything below it from the index.
func (t *tracker) removeSubtree(p string) {
	e := t.index[p]
	delete(t.index, p)
	if e == nil || !e.dir {
		return
	}
	prefix := p + "/"
	for q := range t.index {
		if strings.HasPrefix(q, prefix) {
			delete(t.index, q)
		}
	}
}

// moveSubtree renames p and everything below it to q in the index.
func (t *tracker) moveSubtree(p, q string) {
	if e, ok := t.index[p]; ok {
		delete(t.index, p)
		t.index[q] = e
	}
	prefix := p + "/"
	var moved []string
	for k := range t.index {
		if strings.HasPrefix(k, prefix) {
			moved = append(moved, k)
		}
	}
	for _, k := range moved {
		e := t.index[k]
		delete(t.index, k)
		t.index[q+k[len(p):]] = e
	}
}

// rename reports a rename old → new. Either side may be outside Root (then
// the op becomes a create or a delete, see doc.go).
func (t *tracker) rename(oldPath, newPath string, dir bool, a *actor, raw uint64) {
	t.release(oldPath)
	t.release(newPath)
	oldIn, newIn := t.inside(oldPath), t.inside(newPath)
	var st unix.Stat_t
	exists := t.lstat(newPath, &st)
	switch {
	case oldIn && newIn:
		if _, dup := t.gone[oldPath]; dup && t.index[oldPath] == nil {
			if e := t.index[newPath]; e != nil && exists && e.ino == st.Ino {
				t.c.suppressed.Add(1) // the rescan saw the result already
				return
			}
		}
		t.removeSubtree(newPath) // an overwritten target
		t.moveSubtree(oldPath, newPath)
		op := t.newOp(capture.KindRename, newPath, dir, a, raw)
		op.OldPath = oldPath
		if exists {
			setStat(op, &st, !dir)
			t.index[newPath] = entryOf(&st)
		}
		t.emit(op)
	case oldIn:
		k := capture.KindDelete
		if dir {
			k = capture.KindRmdir
		}
		op := t.newOp(k, oldPath, dir, a, raw)
		if e := t.index[oldPath]; e != nil {
			op.Inode, op.Mode = e.ino, e.mode
			op.Known |= event.HasInode | event.HasMode
		}
		t.removeSubtree(oldPath)
		t.emit(op)
	case newIn:
		k := capture.KindCreate
		if dir {
			k = capture.KindMkdir
		}
		op := t.newOp(k, newPath, dir, a, raw)
		if exists {
			setStat(op, &st, !dir)
			t.index[newPath] = entryOf(&st)
			if dir {
				t.walk(newPath, func(p string, st *unix.Stat_t) { t.index[p] = entryOf(st) }, t.logWalkError)
			}
		}
		t.emit(op)
	}
}

// overflow reports a kernel queue overflow and schedules a rescan,
// honouring the backoff.
func (t *tracker) overflow(raw uint64) {
	t.flush()
	t.c.overflows.Add(1)
	t.emitLoss(capture.ReasonQueue, 0, raw)
}

// lose notes n records (0: an unknown number) lost for reason: an error
// kept the reader from turning them into ops. Losses are reported as
// overflow ops with the reason at the end of the read batch (flush, or
// reportLosses), one per reason until the rescan they announce has run;
// what is lost meanwhile is reported right before that rescan. Nothing is
// lost silently.
func (t *tracker) lose(reason string, n int64) {
	if t.losses == nil {
		t.losses = make(map[string]*loss)
	}
	l := t.losses[reason]
	if l == nil {
		l = &loss{}
		t.losses[reason] = l
	}
	l.n += n
	l.due = true
	t.lossDue = true
	t.c.lostRecords.Add(uint64(n))
}

// reportLosses emits an overflow op for each reason with losses not yet
// announced, and schedules the rescan.
func (t *tracker) reportLosses() {
	if !t.lossDue {
		return
	}
	t.lossDue = false
	for _, reason := range t.lossReasons() {
		l := t.losses[reason]
		if !l.due || l.announced {
			continue
		}
		t.log.Warn("fanotify: events lost; a rescan follows", "root", t.root, "reason", reason, "records", l.n)
		t.emitLoss(reason, l.n, 0)
		l.n, l.due, l.announced = 0, false, true
	}
}

// lossesBeforeRescan reports what was lost after the overflow ops that
// announced the rescan about to run, and starts a new round.
func (t *tracker) lossesBeforeRescan() {
	for _, reason := range t.lossReasons() {
		if l := t.losses[reason]; l.due {
			t.emitLossOp(reason, l.n, 0)
		}
	}
	clear(t.losses)
	t.lossDue = false
}

func (t *tracker) lossReasons() []string {
	rs := make([]string, 0, len(t.losses))
	for r := range t.losses {
		rs = append(rs, r)
	}
	slices.Sort(rs)
	return rs
}

// emitLoss emits an overflow op and schedules a rescan, honouring the
// backoff.
func (t *tracker) emitLoss(reason string, n int64, raw uint64) {
	t.emitLossOp(reason, n, raw)
	now := time.Now()
	switch {
	case t.lastRescan.IsZero() || now.Sub(t.lastRescan) >= 2*t.backoff:
		t.backoff = t.base // quiet for a while: back to the base gap
		if t.rescanDue.IsZero() {
			t.rescanDue = now
		}
	case now.Sub(t.lastRescan) < t.backoff:
		if t.rescanDue.IsZero() {
			t.rescanDue = t.lastRescan.Add(t.backoff)
		}
		t.backoff = min(2*t.backoff, maxRescanBackoff)
	default:
		if t.rescanDue.IsZero() {
			t.rescanDue = now
		}
	}
	// Records merged before the loss may have been lost halfway: forget
	// half-open writes, the rescan compares content.
	clear(t.dirty)
}

func (t *tracker) emitLossOp(reason string, n int64, raw uint64) {
	t.c.addLoss(reason)
	op := t.newOp(capture.KindOverflow, t.root, true, nil, raw)
	op.Reason, op.Count = reason, n
	t.emit(op)
}

// release emits the held rmdir ops of directories that path is not below:
// the next record about something else shows the children are done.
func (t *tracker) release(path string) {
	if len(t.held) == 0 {
		return
	}
	kept := t.held[:0]
	for _, op := range t.held {
		if len(path) > len(op.Path) && path[len(op.Path)] == '/' && strings.HasPrefix(path, op.Path) {
			kept = append(kept, op)
			continue
		}
		t.emit(op)
	}
	clear(t.held[len(kept):])
	t.held = kept
}

// flush emits the held ops and reports losses; called at the end of every
// read batch.
func (t *tracker) flush() {
	for i, op := range t.held {
		t.emit(op)
		t.held[i] = nil
	}
	t.held = t.held[:0]
	if t.lossDue {
		t.reportLosses()
	}
}

// idle is called when the kernel queue is empty: every record from before
// the last rescan has been seen.
func (t *tracker) idle() { clear(t.gone) }

// rescanPending returns when the pending rescan is due (zero if none).
func (t *tracker) rescanPending() time.Time { return t.rescanDue }

func readlink(p string) string {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlink(p, buf)
		if err != nil {
			return ""
		}
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}
