package fanotify

import (
	"golang.org/x/sys/unix"
)

// Seams for tests (fault injection): the system calls that allocate a
// descriptor on the reader's behalf, read the kernel queue or add a watch.
var (
	openByHandleAt = unix.OpenByHandleAt
	openAt         = unix.Openat
	readFD         = unix.Read            // of the kernel queue
	addWatch       = unix.InotifyAddWatch // inotify fallback
)

// fdReserve keeps one descriptor open for the reader goroutine, so that
// resolving a directory handle, reading a directory in a rescan or reading
// /proc works when the rest of the process has used up its descriptors
// (client connections, for instance): an open that fails with EMFILE or
// ENFILE is retried once after the spare is closed, and the spare is taken
// back when that descriptor is closed. The reader needs one descriptor at a
// time. Another thread may take the freed slot first; the open then fails
// and the caller reports the loss. It is owned by the reader goroutine.
type fdReserve struct {
	spare int // -1: not held (lent out, or could not be taken back)
	lent  bool
	c     *counters

	disabled bool // tests: behave as if there were no spare
}

// newFDReserve takes the spare descriptor now, while there are some.
func newFDReserve(c *counters) *fdReserve {
	r := &fdReserve{spare: -1, c: c}
	r.take()
	return r
}

func (r *fdReserve) take() {
	if r.spare >= 0 {
		return
	}
	fd, err := unix.Open("/", unix.O_PATH|unix.O_CLOEXEC, 0)
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

// close closes fd and takes the spare back if it was lent.
func (r *fdReserve) close(fd int) {
	unix.Close(fd)
	if r != nil && !r.disabled && (r.lent || r.spare < 0) {
		r.lent = false
		r.take()
	}
}

// release closes the spare (the watcher is closing).
func (r *fdReserve) release() {
	if r != nil && r.spare >= 0 {
		unix.Close(r.spare)
		r.spare = -1
	}
}
