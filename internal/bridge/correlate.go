package bridge

import (
	"strings"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
)

// class groups operations that one boundary may report under a different
// kind than the other: the kernel cannot tell a hard link or a symlink from
// a create without a stat. Writes and attribute changes are kept apart: the
// loopback's chown after a create is an attrib shadow that must not take
// the place of the write that follows.
type class uint8

const (
	classNone class = iota
	classCreate
	classMkdir
	classWrite
	classAttrib
	classRename
	classDelete
	classRmdir
)

var kindClass = [...]class{
	capture.KindCreate:  classCreate,
	capture.KindWrite:   classWrite,
	capture.KindAttrib:  classAttrib,
	capture.KindRename:  classRename,
	capture.KindDelete:  classDelete,
	capture.KindMkdir:   classMkdir,
	capture.KindRmdir:   classRmdir,
	capture.KindLink:    classCreate,
	capture.KindSymlink: classCreate,
	capture.KindRescan:  classNone,
}

func classOf(k capture.Kind) class {
	if int(k) < len(kindClass) {
		return kindClass[k]
	}
	return classNone
}

type pathKey struct {
	c class
	p string
}

type inoKey struct {
	c   class
	ino uint64
}

// role says what an entry waits for.
type role uint8

const (
	roleDone      role = iota // complete: publish when ordering allows
	roleFUSE                  // a FUSE op waiting for its kernel partner
	roleShadow                // a daemon kernel op waiting for its FUSE op (never published itself)
	roleCandidate             // a kernel write by another process that may be a passthrough write
	roleDropped               // absorbed: release nothing
)

// entry is one operation held by the correlator.
type entry struct {
	ev       *event.Event // nil for a shadow until (unless) it is published
	op       *capture.Op  // kernel entries: the op, paths in mount space
	kind     capture.Kind
	role     role
	class    class
	path     string // match path (mount space)
	old      string // old path (mount space)
	ino      uint64 // 0 when unknown
	deadline time.Time
	at       time.Time // when the correlator took it
	seq      uint64    // the order in which entries started waiting
	alone    bool      // a FUSE op published without its kernel partner
	burst    bool      // a FUSE op that came within a window of the one before
	ordered  bool      // in correlator.order, queued in pathQ under regS and regO
	ord      uint64    // position in the order: earlier entries have smaller
	regS     string    // registered subject
	regO     string    // registered old path

	// Kernel-only events in bridged mode: the FUSE invalidation to send
	// when the event is released (backing-relative paths).
	inval        bool
	relPath      string
	relOld       string
	passthroughW bool  // FUSE write without byte count: data went through passthrough
	size         int64 // FUSE writes: the size reported, -1 if unknown
}

// explainKey is a path or an inode.
type explainKey struct {
	path string
	ino  uint64
}

// config is what the correlator needs from Options.
type config struct {
	window        time.Duration // base window
	maxWindow     time.Duration // the window grows up to this when shadows come late
	selfPID       int32
	backing       string
	mount         string
	bridged       bool
	holdWrites    bool // hold kernel writes of other processes for a FUSE passthrough partner
	invalidate    bool
	publishOrphan bool
	srcKernel     string
	srcFUSE       string
}

// correlator is the single-threaded core of the bridge: it takes ops in
// arrival order with the time they were taken, pairs FUSE ops with their
// kernel shadows, and hands out events and invalidations in order. It is
// not safe for concurrent use; Bridge.Run owns it.
type correlator struct {
	cfg   config
	st    *counters
	dedup *lru
	out   func(*event.Event)
	inval func(k InvalKind, rel string)

	fuseByPath map[pathKey][]*entry
	fuseByIno  map[inoKey][]*entry
	kernByPath map[pathKey][]*entry
	kernByIno  map[inoKey][]*entry

	deadlines []*entry // FIFO: equal windows make deadlines monotonic
	dhead     int

	order   []*entry            // unreleased events, in arrival order
	pathQ   map[string][]*entry // order entries by registered path, in order
	nextOrd uint64

	explain   map[explainKey]explanation
	lastSweep time.Time
	pending   int

	// win is the window in effect: cfg.window, grown while shadows arrive
	// after their FUSE op was published alone (a lagging boundary), and
	// shrinking back as pairs match in time.
	win          time.Duration
	lastDeadline time.Time
	seq          uint64

	// lastKernel and lastFUSE are when each boundary last delivered an op;
	// prevFUSE is the FUSE op before the last.
	lastKernel, lastFUSE, prevFUSE time.Time

	// alone holds the paths of recent FUSE ops published without their
	// kernel partner, and when: after an overflow the kernel boundary's
	// rescan reports those changes again (their shadows were lost), and
	// the bridge does not publish them twice.
	alone map[string]time.Time

	// renamed maps the new path of a recent FUSE rename to the old one.
	renamed map[string]renameNote

	// kmerged is when a kernel op was last merged into a FUSE op, by the
	// FUSE op's kind and path (kernelCovered).
	kmerged map[kindPath]time.Time
	now     time.Time // of the op or expiry being handled
	// wall is now, except during flush (which pretends every window has
	// passed): the real time of the round, for the delay histogram.
	wall     time.Time
	flushing bool

	// lateShadow holds shadows that waited for their FUSE op in vain, by
	// class and name, for lateFUSE.
	lateShadow map[pathKey]shadowNote

	// gone holds inodes deleted through the mount, until one is reused.
	gone map[uint64]time.Time
}

func newCorrelator(cfg config, st *counters, dedupSize int, out func(*event.Event), inval func(InvalKind, string)) *correlator {
	return &correlator{
		cfg: cfg, st: st, dedup: newLRU(dedupSize), out: out, inval: inval,
		fuseByPath: map[pathKey][]*entry{}, fuseByIno: map[inoKey][]*entry{},
		kernByPath: map[pathKey][]*entry{}, kernByIno: map[inoKey][]*entry{},
		pathQ:   map[string][]*entry{},
		explain: map[explainKey]explanation{}, win: cfg.window, alone: map[string]time.Time{},
		renamed: map[string]renameNote{}, gone: map[uint64]time.Time{}, lateShadow: map[pathKey]shadowNote{}, kmerged: map[kindPath]time.Time{},
	}
}

// toMount rewrites a backing path to the mount path; ok is false when p is
// not under the backing root.
func (c *correlator) toMount(p string) (string, bool) {
	rel, ok := c.rel(p)
	if !ok {
		return p, false
	}
	if rel == "" {
		return c.cfg.mount, true
	}
	return strings.TrimSuffix(c.cfg.mount, "/") + "/" + rel, true
}

// rel returns p relative to the backing root ("" for the root itself).
func (c *correlator) rel(p string) (string, bool) {
	b := strings.TrimSuffix(c.cfg.backing, "/")
	if !strings.HasPrefix(p, b) {
		return "", false
	}
	rest := p[len(b):]
	switch {
	case rest == "":
		return "", true
	case rest[0] == '/':
		return strings.TrimLeft(rest, "/"), true
	}
	return "", false
}

// validKind reports whether k is an operation with an event type.
func validKind(k capture.Kind) bool { return k.Type() != "" }

// src is the event source of a boundary's ops.
func (c *correlator) src(bd event.Boundary) string {
	if bd == boundaryFUSE {
		return c.cfg.srcFUSE
	}
	return c.cfg.srcKernel
}

// repeat reports whether op repeats one seen within the window (the
// content-hash LRU). A loss report (fs.overflow) or a rescan summary is
// never a repeat: each stands for its own loss or rescan.
func (c *correlator) repeat(op *capture.Op, now time.Time) bool {
	if op.Kind == capture.KindOverflow || op.Kind == capture.KindRescan {
		return false
	}
	return c.dedup.seen(op, now, c.cfg.window)
}

func (c *correlator) isShadow(op *capture.Op) bool {
	return c.cfg.selfPID != 0 && op.Known&event.HasPID != 0 && op.PID == c.cfg.selfPID
}

// add takes one op observed by a boundary.
func (c *correlator) add(op *capture.Op, now time.Time) {
	c.now, c.wall = now, now
	if op.Kind == capture.KindNone {
		op.Kind = rawKind(op)
	}
	if !validKind(op.Kind) {
		// An event of no known type would make the publisher refuse the
		// whole batch it is in: report the op as a loss instead.
		c.st.invalid.Add(1)
		p := op.Path
		if c.cfg.bridged && op.Boundary != boundaryFUSE {
			p, _ = c.toMount(p)
		}
		if p == "" {
			p = "/"
		}
		ovf := &capture.Op{Kind: capture.KindOverflow, Boundary: op.Boundary, Path: p, IsDir: true,
			Time: op.Time, Count: 1, Reason: capture.ReasonInvalid, Raw: op.Raw}
		c.push(&entry{ev: c.newEvent(ovf, c.src(op.Boundary)), kind: capture.KindOverflow})
		return
	}
	if op.Boundary == boundaryFUSE {
		c.st.seenFUSE.Add(1)
		c.prevFUSE, c.lastFUSE = c.lastFUSE, now
		c.addFUSE(op, now)
		return
	}
	c.st.seenKernel.Add(1)
	c.lastKernel = now
	c.addKernel(op, now)
}

func (c *correlator) addKernel(op *capture.Op, now time.Time) {
	if !c.cfg.bridged {
		// Without a mount there are no shadows: the daemon's own changes
		// (an action writing a file) are changes like any other.
		if c.repeat(op, now) {
			c.st.dedupHits.Add(1)
			return
		}
		ev := c.newEvent(op, c.cfg.srcKernel)
		c.st.kernelOnly.Add(1)
		c.push(&entry{ev: ev, kind: op.Kind})
		return
	}
	shadow := c.isShadow(op)
	relPath, under := c.rel(op.Path)
	relOld, oldUnder := c.rel(op.OldPath)
	if under {
		op.Path, _ = c.toMount(op.Path)
	}
	if oldUnder {
		op.OldPath, _ = c.toMount(op.OldPath)
	}
	// The entry stays on the stack while it is only looked up with: most
	// kernel ops (shadows, passthrough writes) merge into a waiting FUSE op
	// at once. It is copied to the heap when it has to wait or be
	// published.
	k := entry{op: op, kind: op.Kind, class: classOf(op.Kind), path: op.Path, old: op.OldPath}
	if op.Known&event.HasInode != 0 {
		k.ino = op.Inode
	}
	if shadow {
		c.st.shadows.Add(1)
		if f := c.mergeFUSE(&k, true); f != nil {
			c.st.merged.Add(1)
			c.adapt(now.Sub(f.at))
			c.drain()
			return
		}
		if f := c.lateFor(&k, now); f != nil {
			c.st.absorbed.Add(1)
			c.st.absorbedSeen.Add(1)
			c.st.late.Add(1)
			c.grow(now.Sub(f.at))
			return
		}
		e := new(entry)
		*e = k
		e.role = roleShadow
		c.wait(e, now)
		return
	}
	if op.Rescan && c.coveredByFUSE(&k, now) {
		c.st.rescanCovered.Add(1)
		return
	}
	if c.repeat(op, now) {
		c.st.dedupHits.Add(1)
		return
	}
	hold := op.Kind == capture.KindWrite && c.cfg.holdWrites && under && !op.Rescan
	if hold && c.mergeFUSE(&k, false) != nil {
		c.st.passthroughMerged.Add(1)
		c.drain()
		return
	}
	e := new(entry)
	*e = k
	e.ev = c.newEvent(op, c.cfg.srcKernel)
	e.inval = c.cfg.invalidate && under
	e.relPath, e.relOld = relPath, relOld
	if hold {
		e.role = roleCandidate
		c.wait(e, now)
		c.push(e)
		return
	}
	c.st.kernelOnly.Add(1)
	c.push(e)
}

func (c *correlator) addFUSE(op *capture.Op, now time.Time) {
	if c.repeat(op, now) {
		c.st.dedupHits.Add(1)
		return
	}
	ev := c.newEvent(op, c.cfg.srcFUSE)
	e := &entry{ev: ev, kind: op.Kind, class: classOf(op.Kind), path: op.Path, old: op.OldPath}
	if op.Known&event.HasInode != 0 {
		e.ino = op.Inode
	}
	e.burst = !c.prevFUSE.IsZero() && now.Sub(c.prevFUSE) <= c.win
	e.passthroughW = op.Kind == capture.KindWrite && op.Known&event.HasBytes == 0
	e.size = -1
	if op.Known&event.HasSize != 0 {
		e.size = op.Size
	}
	c.remember(e, op, now)
	if op.Kind == capture.KindRename && op.OldPath != "" {
		c.renamed[op.Path] = renameNote{from: op.OldPath, at: now}
	}
	if e.ino != 0 {
		switch op.Kind {
		case capture.KindDelete, capture.KindRmdir:
			c.gone[e.ino] = now
		case capture.KindCreate, capture.KindMkdir, capture.KindSymlink:
			delete(c.gone, e.ino)
		}
	}
	if e.class == classNone || !c.cfg.bridged {
		c.st.fuseOnly.Add(1)
		c.push(e)
		return
	}
	if k := c.findKernel(e); k != nil {
		c.unwait(k)
		if k.role == roleShadow {
			c.merge(e, k)
			c.st.merged.Add(1)
			c.shrink()
			c.push(e)
		} else { // a held passthrough candidate keeps its place in the order
			c.mergeInto(k, e)
			c.st.passthroughMerged.Add(1)
			c.drain()
		}
		return
	}
	if c.lateFUSE(e, now) {
		c.push(e)
		return
	}
	e.role = roleFUSE
	c.wait(e, now)
	c.push(e)
}

func (c *correlator) newEvent(op *capture.Op, src string) *event.Event {
	ev := new(event.Event)
	Translate(op, ev)
	ev.Source = src
	return ev
}

// mergeFUSE merges kernel entry k into the waiting FUSE entry it belongs
// to, and notes the merge for kernelCovered.
func (c *correlator) mergeFUSE(k *entry, shadow bool) *entry {
	f := c.findFUSE(k, shadow)
	if f == nil {
		return nil
	}
	c.merge(f, k)
	return f
}

// findFUSE returns the waiting FUSE entry kernel entry k belongs to, and
// takes it off the waiting lists. A shadow pairs with any FUSE op of its
// class; another process's write only with a FUSE write.
func (c *correlator) findFUSE(k *entry, shadow bool) *entry {
	accept := func(f *entry) bool { return shadow || f.kind == capture.KindWrite }
	var byIno, byOld []*entry
	if k.ino != 0 {
		byIno = c.fuseByIno[inoKey{k.class, k.ino}]
	}
	// The kernel names a file as it is called when it reads the event: a
	// write closed after a rename through the mount comes with the new name
	// (and no inode if the file is gone by then).
	if old, ok := c.renamed[k.path]; ok {
		byOld = c.fuseByPath[pathKey{k.class, old.from}]
	}
	// Names first: inode numbers are reused as fast as files come and go.
	f := pick(k.kind, accept, c.fuseByPath[pathKey{k.class, k.path}], byOld)
	if f == nil {
		f = pick(k.kind, accept, byIno)
	}
	if f != nil {
		c.unwait(f)
	}
	return f
}

// findKernel returns the waiting kernel entry that FUSE entry f pairs with,
// preferring shadows. It does not take it off the lists.
func (c *correlator) findKernel(f *entry) *entry {
	shadowOnly := func(k *entry) bool { return k.role == roleShadow }
	any := func(k *entry) bool { return k.role == roleShadow || f.kind == capture.KindWrite }
	byPath := c.kernByPath[pathKey{f.class, f.path}]
	var byIno []*entry
	if f.ino != 0 {
		byIno = c.kernByIno[inoKey{f.class, f.ino}]
	}
	if k := pick(f.kind, shadowOnly, byPath, byIno); k != nil {
		return k
	}
	return pick(f.kind, any, byPath, byIno)
}

// pick returns the oldest accepted entry of the same kind in the lists,
// else the oldest accepted one of the class: both boundaries report one
// file's ops in order.
func pick(kind capture.Kind, accept func(*entry) bool, lists ...[]*entry) *entry {
	var same, other *entry
	for _, list := range lists {
		for _, e := range list {
			switch {
			case !accept(e):
			case e.kind == kind:
				if same == nil || e.seq < same.seq {
					same = e
				}
			case other == nil || e.seq < other.seq:
				other = e
			}
		}
	}
	if same != nil {
		return same
	}
	return other
}

// merge folds kernel entry k into FUSE entry f: caller context from FUSE,
// inode (and size, mode when FUSE lacks them) from the kernel, and the
// process context from the kernel when FUSE lacks it and k is not a shadow.
func (c *correlator) merge(f, k *entry) {
	c.kmerged[kindPath{f.kind, f.path}] = c.now
	fc, ko := &f.ev.Context, k.op
	has := func(b event.Fields) bool { return ko.Known&b != 0 }
	if has(event.HasInode) {
		fc.SetInode(ko.Inode)
		f.ino = ko.Inode
	}
	if !fc.Has(event.HasSize) && has(event.HasSize) {
		fc.SetSize(ko.Size)
	}
	if !fc.Has(event.HasMode) && has(event.HasMode) {
		fc.SetMode(ko.Mode)
	}
	if k.role != roleShadow {
		if !fc.Has(event.HasPID) && has(event.HasPID) {
			fc.SetPID(ko.PID)
			if has(event.HasTID) {
				fc.SetTID(ko.TID)
			}
		}
		if !fc.Has(event.HasUID) && has(event.HasUID) {
			fc.SetUID(ko.UID)
		}
		if !fc.Has(event.HasGID) && has(event.HasGID) {
			fc.SetGID(ko.GID)
		}
		if fc.Comm == "" {
			fc.Comm = ko.Comm
		}
		if fc.Exe == "" {
			fc.Exe = ko.Exe
		}
	}
	f.ev.Boundaries = f.ev.Boundaries.Add(boundaryKernel)
	f.role = roleDone
}

// mergeInto merges FUSE entry f into held kernel candidate k, which then
// carries f's event in k's place in the order.
func (c *correlator) mergeInto(k, f *entry) {
	c.merge(f, k)
	k.ev, k.kind, k.role, k.inval = f.ev, f.kind, roleDone, false
}

// wait puts e on the waiting lists with a deadline one window away.
func (c *correlator) wait(e *entry, now time.Time) {
	// Deadlines stay in FIFO order when the window shrinks.
	c.seq++
	e.seq, e.at, e.deadline = c.seq, now, now.Add(c.win)
	if e.deadline.Before(c.lastDeadline) {
		e.deadline = c.lastDeadline
	}
	c.lastDeadline = e.deadline
	c.queueDeadline(e)
	c.pending++
	pk := pathKey{e.class, e.path}
	if e.role == roleFUSE {
		c.fuseByPath[pk] = append(c.fuseByPath[pk], e)
		// A FUSE op reported after its file was deleted through the mount
		// (a late report at RELEASE) is not found by an inode number that
		// the next file may already carry.
		if _, gone := c.gone[e.ino]; e.ino != 0 && !gone {
			ik := inoKey{e.class, e.ino}
			c.fuseByIno[ik] = append(c.fuseByIno[ik], e)
		}
		return
	}
	c.kernByPath[pk] = append(c.kernByPath[pk], e)
	if e.ino != 0 {
		ik := inoKey{e.class, e.ino}
		c.kernByIno[ik] = append(c.kernByIno[ik], e)
	}
}

// unwait takes e off the waiting lists (its deadline entry is skipped lazily).
func (c *correlator) unwait(e *entry) {
	c.pending--
	pk := pathKey{e.class, e.path}
	ik := inoKey{e.class, e.ino}
	if e.role == roleFUSE {
		removeFrom(c.fuseByPath, pk, e)
		if e.ino != 0 {
			removeFrom(c.fuseByIno, ik, e)
		}
	} else {
		removeFrom(c.kernByPath, pk, e)
		if e.ino != 0 {
			removeFrom(c.kernByIno, ik, e)
		}
	}
	e.deadline = time.Time{}
}

func removeFrom[K comparable](m map[K][]*entry, k K, e *entry) {
	list := m[k]
	for i, x := range list {
		if x == e {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(m, k)
	} else {
		m[k] = list
	}
}

// nextDeadline returns the earliest deadline of a waiting entry.
// queueDeadline appends e to the deadline queue. The consumed head is cut
// off once it is most of the queue: under a steady stream the queue is
// never empty, and without this it would grow by one slot per op for as
// long as the stream lasts.
func (c *correlator) queueDeadline(e *entry) {
	if c.dhead >= 1024 && c.dhead*2 >= len(c.deadlines) {
		n := copy(c.deadlines, c.deadlines[c.dhead:])
		clear(c.deadlines[n:])
		c.deadlines, c.dhead = c.deadlines[:n], 0
	}
	c.deadlines = append(c.deadlines, e)
}

func (c *correlator) nextDeadline() (time.Time, bool) {
	for c.dhead < len(c.deadlines) {
		e := c.deadlines[c.dhead]
		if !e.deadline.IsZero() {
			return e.deadline, true
		}
		c.deadlines[c.dhead] = nil
		c.dhead++
	}
	c.deadlines, c.dhead = c.deadlines[:0], 0
	return time.Time{}, false
}

// expire settles every entry whose deadline is not after now.
func (c *correlator) expire(now time.Time) {
	c.now = now
	if !c.flushing {
		c.wall = now
	}
	changed := false
	for {
		d, ok := c.nextDeadline()
		if !ok || d.After(now) {
			break
		}
		e := c.deadlines[c.dhead]
		c.deadlines[c.dhead] = nil
		c.dhead++
		if c.stalled(e, now) {
			c.rewait(e, now)
			continue
		}
		explained := c.explained(e)
		c.unwait(e)
		changed = true
		switch e.role {
		case roleFUSE:
			if c.kernelCovered(e) {
				// The kernel merged this op's event into one it reported
				// for an earlier FUSE op of the same kind on the file.
				e.ev.Boundaries = e.ev.Boundaries.Add(boundaryKernel)
				e.role = roleDone
				c.st.coalesced.Add(1)
				break
			}
			e.role, e.alone = roleDone, true
			c.noteAlone(e, now)
			c.st.fuseOnly.Add(1)
		case roleCandidate:
			if explained {
				e.role = roleDropped
				c.st.dedupHits.Add(1)
			} else {
				e.role = roleDone
				c.st.kernelOnly.Add(1)
			}
		case roleShadow:
			switch {
			case explained:
				c.st.absorbed.Add(1)
				c.st.absorbedSeen.Add(1)
				if e.kind != capture.KindAttrib { // attribs are side effects
					c.lateShadow[pathKey{e.class, e.path}] = shadowNote{e: e, at: now}
				}
			case c.cfg.publishOrphan:
				c.st.orphans.Add(1)
				c.st.orphansSeen.Add(1)
				e.role = roleDone
				e.ev = c.newEvent(e.op, c.cfg.srcKernel)
				c.push(e)
			default:
				c.st.orphans.Add(1)
				c.st.orphansSeen.Add(1)
				c.lateShadow[pathKey{e.class, e.path}] = shadowNote{e: e, at: now, orphan: true}
			}
		}
	}
	if changed {
		c.drain()
	}
	if now.Sub(c.lastSweep) > 4*c.win {
		c.lastSweep = now
		for k, x := range c.explain {
			if now.After(x.until.Add(c.cfg.maxWindow)) {
				delete(c.explain, k)
			}
		}
		for k, t := range c.kmerged {
			if now.Sub(t) > 2*c.win {
				delete(c.kmerged, k)
			}
		}
		for k, n := range c.lateShadow {
			if now.Sub(n.at) > c.cfg.maxWindow {
				delete(c.lateShadow, k)
			}
		}
		for ino, t := range c.gone {
			if now.Sub(t) > 2*c.win {
				delete(c.gone, ino)
			}
		}
		for p, r := range c.renamed {
			if now.Sub(r.at) > 2*c.win {
				delete(c.renamed, p)
			}
		}
		for p, t := range c.alone {
			if now.Sub(t) > rescanHorizon {
				delete(c.alone, p)
			}
		}
	}
}

// flush settles everything held, as if every window had passed.
func (c *correlator) flush() {
	c.flushing = true
	c.expire(time.Unix(1<<62, 0))
	c.flushing = false
}
