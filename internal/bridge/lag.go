package bridge

import (
	"time"

	"github.com/semprop/semprop/internal/capture"
)

// When the two boundaries are not in step. The kernel boundary and the
// FUSE boundary report one operation independently; either may lag (a
// starved reader, a slow handler), the kernel merges identical queued
// events, an op may leave side effects (the chown after a create) or reach
// the kernel under another name (a close after a rename), and a boundary
// may report an op twice. This file holds what the correlator does about
// it: explanations for stray shadows, late shadows and late FUSE ops, an
// adaptive window, waiting out a stalled kernel boundary, repeats, and
// rescans after an overflow.

// explanation records a recent FUSE operation on a path or inode, so a
// stray shadow (a side effect such as the chown after a create, or a link
// count change) is recognised as part of an event already published.
type explanation struct {
	until       time.Time
	passthrough bool   // a FUSE write whose data the kernel saw from the writer
	fuse        *entry // the FUSE op
}

type kindPath struct {
	kind capture.Kind
	path string
}

type shadowNote struct {
	e      *entry
	at     time.Time
	orphan bool
}

type renameNote struct {
	from string
	at   time.Time
}

// noteAlone records FUSE entry e, published alone, for coveredByFUSE.
func (c *correlator) noteAlone(e *entry, now time.Time) {
	if len(c.alone) >= maxAlone {
		return // the rescan may then report some changes twice, flagged as rescan
	}
	c.alone[e.path] = now
	if e.old != "" {
		c.alone[e.old] = now
	}
}

// coveredByFUSE reports whether the rescan's report k is of a path a FUSE
// op changed while the kernel's view of it was lost.
func (c *correlator) coveredByFUSE(k *entry, now time.Time) bool {
	if k.kind == capture.KindOverflow || k.kind == capture.KindRescan {
		return false
	}
	t, ok := c.alone[k.path]
	return ok && now.Sub(t) <= rescanHorizon
}

// lateFUSE pairs FUSE entry e with a shadow of its kind and name that
// waited for it in vain (the FUSE boundary lagged, e.g. a handler that took
// long), up to MaxWindow ago, and widens the window.
func (c *correlator) lateFUSE(e *entry, now time.Time) bool {
	k := pathKey{e.class, e.path}
	n, ok := c.lateShadow[k]
	if !ok || n.e.kind != e.kind || now.Sub(n.e.at) > c.cfg.maxWindow {
		return false
	}
	delete(c.lateShadow, k)
	c.merge(e, n.e)
	if n.orphan {
		c.st.orphans.Add(^uint64(0))
	} else {
		c.st.absorbed.Add(^uint64(0))
	}
	c.st.merged.Add(1)
	c.st.lateFUSE.Add(1)
	c.grow(now.Sub(n.e.at))
	return true
}

// lateFor returns the FUSE op that shadow k comes too late for: the last
// FUSE op on the same file, of k's class, published alone no more than
// MaxWindow ago.
func (c *correlator) lateFor(k *entry, now time.Time) *entry {
	for _, key := range [...]explainKey{{path: k.path}, {ino: k.ino}} {
		if key == (explainKey{}) {
			continue
		}
		x, ok := c.explain[key]
		if ok && x.fuse != nil && x.fuse.alone && x.fuse.class == k.class && now.Sub(x.fuse.at) <= c.cfg.maxWindow {
			return x.fuse
		}
	}
	return nil
}

// stalled reports whether FUSE entry e, at its deadline, should wait on
// because the kernel boundary is stalled: it delivered nothing since e
// came, and e is part of a burst (FUSE ops came within a window before it,
// or after it) whose shadows are all still queued in the kernel. A lone op
// on a quiet system is not held past its window. Nothing waits past
// MaxWindow.
func (c *correlator) stalled(e *entry, now time.Time) bool {
	return e.role == roleFUSE && c.cfg.bridged && c.lastKernel.Before(e.at) &&
		(e.burst || c.lastFUSE.After(e.at)) && now.Sub(e.at) < c.cfg.maxWindow
}

// rewait gives waiting entry e another window, within MaxWindow of its
// arrival, keeping the deadline queue in order.
func (c *correlator) rewait(e *entry, now time.Time) {
	e.deadline = now.Add(c.win)
	if lim := e.at.Add(c.cfg.maxWindow); e.deadline.After(lim) {
		e.deadline = lim
	}
	if e.deadline.Before(c.lastDeadline) {
		e.deadline = c.lastDeadline
	}
	c.lastDeadline = e.deadline
	c.queueDeadline(e)
	c.st.stallWaits.Add(1)
}

// grow widens the window after a shadow came lag after its FUSE op.
func (c *correlator) grow(lag time.Duration) {
	if w := min(lag+lag/2, c.cfg.maxWindow); w > c.win {
		c.win = w
	}
}

// adapt follows the lag of a shadow that matched its waiting FUSE op in
// time: a lag past half the window widens it to twice the lag before pairs
// start to miss; a short one shrinks it towards its base.
func (c *correlator) adapt(lag time.Duration) {
	if lag > c.win/2 {
		c.grow(2 * lag * 2 / 3) // grow takes 1.5 × its argument
		return
	}
	c.shrink()
}

// shrink moves the window back towards its base as pairs match in time.
func (c *correlator) shrink() {
	if c.win > c.cfg.window {
		c.win -= (c.win-c.cfg.window)/32 + 1
	}
}

// remember records a FUSE op as the explanation of stray shadows on its
// paths and inode for two windows.
func (c *correlator) remember(e *entry, op *capture.Op, now time.Time) {
	x := explanation{until: now.Add(2 * c.win), passthrough: e.passthroughW, fuse: e}
	set := func(k explainKey) {
		// A passthrough write keeps explaining the writer's late kernel
		// write after a rename or delete of the file in the same window.
		if old, ok := c.explain[k]; ok && old.passthrough && !now.After(old.until) {
			x.passthrough = true
		}
		c.explain[k] = x
	}
	set(explainKey{path: op.Path})
	if op.OldPath != "" {
		set(explainKey{path: op.OldPath})
	}
	if e.ino != 0 {
		set(explainKey{ino: e.ino})
	}
}

// explained reports whether a FUSE op on the same file in the two windows
// before kernel entry e arrived (or during its window) accounts for it; for
// a write by another process only a passthrough write does.
func (c *correlator) explained(e *entry) bool {
	arrived := e.at
	ok := func(k explainKey) bool {
		x, found := c.explain[k]
		return found && !arrived.After(x.until) && (e.role == roleShadow || x.passthrough)
	}
	return ok(explainKey{path: e.path}) || (e.old != "" && ok(explainKey{path: e.old})) || (e.ino != 0 && ok(explainKey{ino: e.ino}))
}

// kernelCovered reports whether FUSE entry e, left without a kernel op,
// was seen by the kernel after all: the kernel merges identical events
// queued together (two close-writes of one file by one process become one
// record), so one kernel op may stand for several FUSE ops of the same kind
// on the same file. It did if a kernel op was merged into an earlier FUSE
// op of e's kind and name within a window of e. (Pairing is done only at
// e's deadline: had the kernel not merged, its own op would have come.)
func (c *correlator) kernelCovered(e *entry) bool {
	t, ok := c.kmerged[kindPath{e.kind, e.path}]
	d := e.at.Sub(t)
	return ok && d <= c.win && d >= -c.win
}

// rescanHorizon is how long a FUSE op published alone covers a rescan's
// report of the same path: longer than the kernel boundary's largest
// rescan backoff (30s) plus a rescan of a big tree.
const (
	rescanHorizon = 2 * time.Minute
	maxAlone      = 1 << 16
)
