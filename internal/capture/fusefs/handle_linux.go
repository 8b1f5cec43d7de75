package fusefs

import (
	"context"
	"math"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
)

// handle is a file opened for writing. It coalesces all writes through it
// into one KindWrite, reported when the caller closes it (FLUSH) or, for
// what is left, at RELEASE. Read-only opens are not wrapped.
type handle struct {
	*fs.LoopbackFile
	fsys        *FS
	inode       *fs.Inode
	node        *node // nil if the inode is not ours (never in practice)
	fd          int   // the backing descriptor, valid until Release
	passthrough bool  // opened while passthrough was in effect: data bypasses us
	opener      *fuse.Caller

	mu        sync.Mutex // guards the fields below; taken before node.mu
	writes    uint64     // WRITE requests since the last report
	bytes     int64
	lo, hi    int64 // written range since the last report
	dirty     bool  // truncated or allocated through this handle
	writer    fuse.Caller
	hasWriter bool
	base      dataSig // backing file state at open / last report
	lastRel   string  // last known path, for a file deleted while open
	claimed   bool    // holds a claim on node (beginChange) until its next report

	anchor *anchor // set when the backing descriptor is read-only (see anchor)
}

// anchor: with passthrough, a file created through the mount is opened on
// the backing tree read-only. The kernel reads and writes it through a
// backing file of its own, opened with the caller's flags, so the server
// needs its descriptor only to name the file (and for fstat, fsync and
// reads). A writable descriptor would cost a close-write record on the
// kernel boundary at every release: a shadow of nothing, one more record
// per file copied in. What the server itself must write (a WRITE that was
// not passed through, a truncate or fallocate through the handle, the
// destination of copy_file_range) goes through a writable descriptor
// reopened from the read-only one on first need. (File locks are the
// kernel's: the mount does not ask for them to be forwarded.)
type anchor struct {
	flags int // the open flags the caller asked for, less O_CREAT|O_EXCL|O_TRUNC

	mu sync.Mutex
	w  *fs.LoopbackFile // the writable reopen, nil until needed
}

// writable returns the loopback file to write through: the handle's own,
// or for an anchored handle its writable reopen.
func (h *handle) writable() (*fs.LoopbackFile, syscall.Errno) {
	a := h.anchor
	if a == nil {
		return h.LoopbackFile, 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.w == nil {
		fd, err := syscall.Open("/proc/self/fd/"+strconv.Itoa(h.fd), a.flags|syscall.O_CLOEXEC, 0)
		if err != nil {
			return nil, fs.ToErrno(err)
		}
		a.w = fs.NewLoopbackFile(fd).(*fs.LoopbackFile)
	}
	return a.w, 0
}

// Setattr changes attributes through the handle (a truncate needs a
// writable descriptor).
func (h *handle) Setattr(ctx context.Context, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	w, errno := h.writable()
	if errno != 0 {
		return errno
	}
	return w.Setattr(ctx, in, out)
}

var (
	_ fs.FileHandle          = (*handle)(nil)
	_ fs.FileWriter          = (*handle)(nil)
	_ fs.FileWritever        = (*handle)(nil)
	_ fs.FileFlusher         = (*handle)(nil)
	_ fs.FileReleaser        = (*handle)(nil)
	_ fs.FileAllocater       = (*handle)(nil)
	_ fs.FilePassthroughFder = (*handle)(nil)
	_ fs.FileSetattrer       = (*handle)(nil)
)

// wrap tracks fh, a loopback file opened for writing on inode. base is the
// file's state after the open; size -1 means "stat it now". flags has
// O_TRUNC if the open truncated an existing file.
func (f *FS) wrap(ctx context.Context, inode *fs.Inode, fh fs.FileHandle, flags uint32, base dataSig) fs.FileHandle {
	rel, _ := f.relPath(inode)
	return f.wrapAt(ctx, inode, rel, fh, flags, base)
}

// wrapAt is wrap for an inode whose path (relative to the root) the caller
// knows.
func (f *FS) wrapAt(ctx context.Context, inode *fs.Inode, rel string, fh fs.FileHandle, flags uint32, base dataSig) fs.FileHandle {
	lf, ok := fh.(*fs.LoopbackFile)
	if !ok {
		return fh
	}
	fd, _ := lf.PassthroughFd() // only reads the descriptor number
	if base.size < 0 {
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err == nil {
			base = sigOfStat(&st)
		}
	}
	h := &handle{
		LoopbackFile: lf,
		fsys:         f,
		inode:        inode,
		fd:           fd,
		passthrough:  f.passthrough.Load(),
		base:         base,
		lo:           math.MaxInt64,
	}
	h.node, _ = inode.Operations().(*node)
	if c, ok := fuse.FromContext(ctx); ok {
		cc := *c
		h.opener = &cc
	}
	h.lastRel = rel
	if flags&syscall.O_TRUNC != 0 {
		// Truncated at open (a data change, as fanotify's FAN_MODIFY says),
		// even if it was empty.
		h.dirty = true
	}
	return h
}

func unwrap(fh fs.FileHandle) fs.FileHandle {
	if h, ok := fh.(*handle); ok {
		return h.LoopbackFile
	}
	return fh
}

// PassthroughFd offers the backing descriptor to the kernel only when
// passthrough is in effect.
func (h *handle) PassthroughFd() (int, bool) {
	if !h.passthrough {
		return 0, false
	}
	return h.LoopbackFile.PassthroughFd()
}

// Write writes data at off and records it.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if h.fsys.refuse(ctx, "write") {
		return 0, errRefused
	}
	w, errno := h.writable()
	if errno != 0 {
		return 0, errno
	}
	h.beginChange()
	n, errno := w.Write(ctx, data, off)
	if n > 0 {
		h.noteWrite(ctx, off, int64(n), true)
	}
	return n, errno
}

// Writev writes data at off and records it.
func (h *handle) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	if h.fsys.refuse(ctx, "write") {
		return 0, errRefused
	}
	w, errno := h.writable()
	if errno != 0 {
		return 0, errno
	}
	h.beginChange()
	n, errno := w.Writev(ctx, data, off)
	if n > 0 {
		h.noteWrite(ctx, off, int64(n), true)
	}
	return n, errno
}

// Allocate preallocates or punches holes: a data change.
func (h *handle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	if h.fsys.refuse(ctx, "fallocate") {
		return errRefused
	}
	w, errno := h.writable()
	if errno != 0 {
		return errno
	}
	h.beginChange()
	errno = w.Allocate(ctx, off, size, mode)
	if errno == 0 {
		h.markDirty()
	}
	return errno
}

func (h *handle) noteWrite(ctx context.Context, off, n int64, request bool) {
	st := &h.fsys.st
	if request {
		st.writeCalls.Add(1)
		if h.passthrough {
			h.fsys.fellBackFromPassthrough()
		}
	}
	st.bytesWritten.Add(uint64(n))
	c, hasCaller := fuse.FromContext(ctx)
	h.mu.Lock()
	if h.writes > 0 {
		st.writesCoalesced.Add(1)
	}
	h.writes++
	h.bytes += n
	h.lo = min(h.lo, off)
	h.hi = max(h.hi, off+n)
	if hasCaller && c.Pid != 0 {
		h.writer, h.hasWriter = *c, true
	}
	h.mu.Unlock()
}

// beginChange claims the node for a data change through this handle
// before the change reaches the backing file (see node.claim); the claim
// lasts until the handle's next report.
func (h *handle) beginChange() {
	if h.node == nil {
		return
	}
	h.mu.Lock()
	first := !h.claimed
	h.claimed = true
	h.mu.Unlock()
	if first {
		h.node.claim()
	}
}

func (h *handle) markDirty() {
	h.mu.Lock()
	h.dirty = true
	h.mu.Unlock()
}

// Flush runs on every close(2) of a descriptor of this open file; it
// reports what changed since the last report.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	errno := h.LoopbackFile.Flush(ctx)
	h.report(ctx)
	return errno
}

// Release runs once, after the last descriptor is gone.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	if hook := h.fsys.onRelease; hook != nil {
		hook(false)
		defer hook(true)
	}
	h.report(ctx)
	if a := h.anchor; a != nil {
		a.mu.Lock()
		if a.w != nil {
			a.w.Release(ctx)
			a.w = nil
		}
		a.mu.Unlock()
	}
	return h.LoopbackFile.Release(ctx)
}

// report emits one KindWrite if data changed since the last report: writes
// or a truncate through this handle, or (passthrough, where data bypasses
// the server) a change of the backing file's size or mtime.
func (h *handle) report(ctx context.Context) {
	if !h.passthrough {
		// Everything is seen by Write; skip the fstat when nothing is pending.
		h.mu.Lock()
		pending := h.writes > 0 || h.dirty
		claimed := h.claimed && !pending // a change that failed
		if claimed {
			h.claimed = false
		}
		h.mu.Unlock()
		if claimed {
			h.node.unclaim()
		}
		if !pending {
			return
		}
	}
	var st syscall.Stat_t
	statErr := syscall.Fstat(h.fd, &st)
	cur := sigOfStat(&st)

	h.mu.Lock()
	writes, bytes, lo, hi, dirty := h.writes, h.bytes, h.lo, h.hi, h.dirty
	claimed := h.claimed
	h.claimed = false
	own := 0
	if claimed {
		own = 1
	}
	statOnly := false
	if writes == 0 && !dirty {
		// Data passed us by only in passthrough mode; without it, a change
		// we did not see was made by someone else (directly on the backing
		// tree) and is the kernel boundary's to report. A change another
		// handle (or a truncate by path) made through the mount is that
		// one's to report: it claimed the node before making it (the
		// fstat above came after, if it saw the change), and it drops the
		// claim after recording what it reported.
		if !h.passthrough || statErr != nil || cur == h.base ||
			(h.node != nil && (h.node.othersChanging(own) || h.node.alreadyReported(cur))) {
			if statErr == nil {
				h.base = cur
			}
			h.mu.Unlock()
			if claimed {
				h.node.unclaim()
			}
			return
		}
		statOnly = true
	}
	who := h.opener
	if h.hasWriter {
		w := h.writer
		who = &w
	} else if c, ok := fuse.FromContext(ctx); ok && c.Pid != 0 {
		who = c
	}
	h.writes, h.bytes, h.lo, h.hi, h.dirty, h.hasWriter = 0, 0, math.MaxInt64, 0, false, false
	if statErr == nil {
		h.base = cur
	}
	if rel, ok := h.fsys.relPath(h.inode); ok {
		h.lastRel = rel
	}
	rel := h.lastRel
	h.mu.Unlock()

	if h.node != nil && statErr == nil {
		h.node.setReported(cur)
	}
	if claimed {
		h.node.unclaim() // after setReported: see node.claim
	}
	op := &capture.Op{Kind: capture.KindWrite, Boundary: event.BoundaryFUSE}
	op.Time = time.Now()
	if who != nil {
		h.fsys.setCaller(op, who)
	}
	op.Path = h.fsys.mountPath(rel)
	if statErr == nil {
		op.Inode, op.Size, op.Mode = st.Ino, st.Size, st.Mode
		op.Known |= event.HasInode | event.HasSize | event.HasMode
	}
	switch {
	case writes > 0:
		op.Bytes, op.Offset, op.Length = bytes, lo, hi-lo
		op.Known |= event.HasBytes | event.HasOffset | event.HasLength
	case !h.passthrough:
		op.Known |= event.HasBytes // exactly zero bytes: a truncate
	}
	if statOnly {
		h.fsys.st.passthroughWrites.Add(1)
	}
	h.fsys.emit(op)
}
