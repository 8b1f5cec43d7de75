package fusefs

import (
	"context"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// refuse reports whether the guard refuses operation op to the caller of
// ctx. With nobody listed it costs one call of Guard.Active.
func (f *FS) refuse(ctx context.Context, op string) bool {
	g := f.guard
	if g == nil || !g.Active() {
		return false
	}
	return f.refuseListed(ctx, op)
}

// refuseListed resolves the caller's process and asks the guard.
func (f *FS) refuseListed(ctx context.Context, op string) bool {
	c, ok := fuse.FromContext(ctx)
	if !ok {
		return false
	}
	pid := int32(0)
	if c.Pid != 0 {
		pid = int32(c.Pid) // a thread of a process that exited: its tid
		if pi, ok := f.procs.lookup(int32(c.Pid)); ok {
			pid = pi.tgid
		}
	}
	if !f.guard.Refuse(pid, c.Uid, op) {
		return false
	}
	f.st.refused.Add(1)
	return true
}

// preserve lets the guard copy the file at rel (relative to the backing
// root) before op destroys it down to newSize bytes (-1: all of it).
func (f *FS) preserve(rel, op string, newSize int64) {
	g := f.guard
	if g == nil || !g.Preserving() {
		return
	}
	g.Preserve(filepath.Join(f.backing, rel), f.mountPath(rel), op, newSize)
}

// errRefused is what a refused caller gets.
const errRefused = syscall.EPERM
