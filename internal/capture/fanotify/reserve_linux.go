package fanotify

import (
	"golang.org/x/sys/unix"
)

// Seams for tests (fault injection, races made to happen): the system calls
// that allocate a descriptor on the reader's behalf, read the kernel queue,
// add a watch or look at an object a record names.
var (
	openByHandleAt = unix.OpenByHandleAt
	openAt         = unix.Openat
	readFD         = unix.Read            // of the kernel queue
	addWatch       = unix.InotifyAddWatch // inotify fallback
	lstat          = unix.Lstat
)

// fdReserve keeps one descriptor open for the reader goroutine, so that
// resolving a directory handle, reading a directory in a rescan or reading
// /proc works when the rest of the process has used up its descriptors
// (client connections, for instance): an open that fails with EMFILE or
// ENFILE is retried once after the spare is closed. When that descriptor
// is done with, its number becomes the spare again: dup3 of the anchor (a
// descriptor the watcher holds anyway, its eventfd) onto it, which needs
// no free slot, so no other thread can take the spare's slot for good.
// Between the close of the spare and the retried open another thread may
// take the slot; the open then fails and the caller reports the loss. The
// reader needs one such descriptor at a time. It is owned by the reader
// goroutine.
type fdReserve struct {
	spare  int // -1: not held (lent out, or could not be taken back)
	anchor int // duplicated to make a spare; -1: open "/" instead
	lent   bool
	c      *counters

	disabled bool // tests: behave as if there were no spare
}

// newFDReserve takes the spare descriptor now, while there are some.
func newFDReserve(anchor int, c *counters) *fdReserve {
	r := &fdReserve{spare: -1, anchor: anchor, c: c}
	r.take()
	return r
}

func (r *fdReserve) take() {
	if r.spare >= 0 {
		return
	}
	var fd int
	var err error
	if r.anchor >= 0 {
		fd, err = unix.FcntlInt(uintptr(r.anchor), unix.F_DUPFD_CLOEXEC, 0)
	} else {
		fd, err = unix.Open("/", unix.O_PATH|unix.O_CLOEXEC, 0)
	}
	if err == nil {
		r.spare = fd
	}
}

// open calls fn, and again after giving up the spare when fn failed for
// want of a descriptor. A descriptor it returns must be closed with close.
func (r *fdReserve) open(fn func() (int, error)) (int, error) {
	fd, err := fn()
	if (err != unix.EMFILE && err != unix.ENFILE) || r == nil || r.disabled || r.spare < 0 {
		return fd, err
	}
	unix.Close(r.spare)
	r.spare, r.lent = -1, true
	r.c.reserveUsed.Add(1)
	fd, err = fn()
	if err != nil {
		r.lent = false
		r.take()
	}
	return fd, err
}

// close closes fd, or turns it into the spare if the spare was lent for it.
func (r *fdReserve) close(fd int) {
	if r == nil || r.disabled {
		unix.Close(fd)
		return
	}
	if r.lent {
		r.lent = false
		if r.anchor >= 0 && unix.Dup3(r.anchor, fd, unix.O_CLOEXEC) == nil {
			r.spare = fd // the same slot, now a duplicate of the anchor
			return
		}
	}
	unix.Close(fd)
	r.take()
}

// release closes the spare (the watcher is closing).
func (r *fdReserve) release() {
	if r != nil && r.spare >= 0 {
		unix.Close(r.spare)
		r.spare = -1
	}
}
