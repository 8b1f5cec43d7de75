package bridge

import "path"

// Ordering. Events of one path are published in the order their ops were
// taken: an event that is complete waits behind an earlier event still
// held (a FUSE op waiting for its shadow, a kernel write waiting for a
// passthrough partner) on the same path, on its old path, or on the parent
// directory of either (so a rename of a directory is published before an
// event inside it under the new name). Unrelated events are not held.

// checkPaths are the paths whose earlier pending events e must not overtake:
// its own paths and their parent directories.
func checkPaths(e *entry, f func(string) bool) bool {
	s, o := e.ev.Subject, e.ev.Context.OldPath
	if f(s) || f(path.Dir(s)) {
		return true
	}
	return o != "" && (f(o) || f(path.Dir(o)))
}

// push hands e to ordering: released at once when it is complete and no
// earlier unreleased event touches its paths, else queued.
func (c *correlator) push(e *entry) {
	if e.at.IsZero() {
		e.at = c.now // it did not wait: its op came now
	}
	if e.role == roleDone && len(c.order) == 0 {
		c.release(e)
		return
	}
	if e.role == roleDone && !checkPaths(e, func(p string) bool { return len(c.pathQ[p]) > 0 }) {
		c.release(e)
		return
	}
	e.ordered = true
	c.nextOrd++
	e.ord = c.nextOrd
	c.order = append(c.order, e)
	e.regS, e.regO = e.ev.Subject, e.ev.Context.OldPath
	c.pathQ[e.regS] = append(c.pathQ[e.regS], e)
	if e.regO != "" {
		c.pathQ[e.regO] = append(c.pathQ[e.regO], e)
	}
}

// drain releases queued entries that became complete, in order, keeping
// back those behind an earlier unreleased event on the same paths. Each
// path's queue is in order, so "an earlier entry holds p" is a look at the
// head of p's queue: a pass costs a few lookups per queued entry, not a
// set of every queued path rebuilt per pass.
func (c *correlator) drain() {
	if len(c.order) == 0 {
		return
	}
	j := 0
	for _, e := range c.order {
		if e.role == roleDone || e.role == roleDropped {
			blocked := func(p string) bool {
				q := c.pathQ[p]
				return len(q) > 0 && q[0].ord < e.ord
			}
			if e.role == roleDropped || !checkPaths(e, blocked) {
				c.unorder(e)
				if e.role == roleDone {
					c.release(e)
				}
				continue
			}
		}
		c.order[j] = e
		j++
	}
	clear(c.order[j:])
	c.order = c.order[:j]
}

func (c *correlator) unorder(e *entry) {
	e.ordered = false
	c.dequeue(e.regS, e)
	if e.regO != "" {
		c.dequeue(e.regO, e)
	}
}

// dequeue removes e from p's queue (at its head, unless it was dropped).
func (c *correlator) dequeue(p string, e *entry) {
	q := c.pathQ[p]
	for i, x := range q {
		if x == e {
			q = append(q[:i], q[i+1:]...)
			q[len(q):cap(q)][0] = nil
			break
		}
	}
	if len(q) == 0 {
		delete(c.pathQ, p)
		return
	}
	c.pathQ[p] = q
}

// release sends e's invalidations (kernel-only changes in bridged mode) and
// then its event, and records how long the correlator held it.
func (c *correlator) release(e *entry) {
	c.st.delay.Observe(int64(c.wall.Sub(e.at)))
	if e.inval {
		row := Invalidation(e.kind)
		if row.OldPath != InvalNone && e.ev.Context.OldPath != "" {
			c.inval(row.OldPath, e.relOld)
		}
		if row.Path != InvalNone {
			c.inval(row.Path, e.relPath)
		}
	}
	c.out(e.ev)
}
