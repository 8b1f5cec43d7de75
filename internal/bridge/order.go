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
	if e.role == roleDone && len(c.order) == 0 {
		c.release(e)
		return
	}
	if e.role == roleDone && !checkPaths(e, func(p string) bool { return c.pathCount[p] > 0 }) {
		c.release(e)
		return
	}
	e.ordered = true
	c.order = append(c.order, e)
	e.regS, e.regO = e.ev.Subject, e.ev.Context.OldPath
	c.pathCount[e.regS]++
	if e.regO != "" {
		c.pathCount[e.regO]++
	}
}

// drain releases queued entries that became complete, in order, keeping
// back those behind an earlier unreleased event on the same paths.
func (c *correlator) drain() {
	if len(c.order) == 0 {
		return
	}
	clear(c.scratch)
	blocked := func(p string) bool { _, ok := c.scratch[p]; return ok }
	j := 0
	for _, e := range c.order {
		if e.role == roleDone || e.role == roleDropped {
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
		c.scratch[e.regS] = struct{}{}
		if e.regO != "" {
			c.scratch[e.regO] = struct{}{}
		}
	}
	clear(c.order[j:])
	c.order = c.order[:j]
}

func (c *correlator) unorder(e *entry) {
	e.ordered = false
	dec := func(p string) {
		if n := c.pathCount[p] - 1; n > 0 {
			c.pathCount[p] = n
		} else {
			delete(c.pathCount, p)
		}
	}
	dec(e.regS)
	if e.regO != "" {
		dec(e.regO)
	}
}

// release sends e's invalidations (kernel-only changes in bridged mode) and
// then its event.
func (c *correlator) release(e *entry) {
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
