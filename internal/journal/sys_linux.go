package journal

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// datasync flushes f's data (and the metadata needed to read it back) to
// stable storage.
func datasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = unix.Fdatasync(int(fd))
			if serr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return serr
}

// lockDir takes an exclusive advisory lock on dir/LOCK so that two processes
// never append to one journal. The kernel drops it when the process dies.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(dir+"/LOCK", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("journal: lock %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if err == unix.EWOULDBLOCK {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("journal: lock %s: %w", dir, err)
	}
	return f, nil
}

// preader reads a file with one pread(2) per call, or, once mapRead has
// mapped the file, with a copy from the mapping and no system call. It
// holds the file's descriptor number: it must not be used after the file
// is closed, and close must be called before the file is.
type preader struct {
	fd    int
	m     []byte // the file mapped read-only, or nil
	tried bool   // mapRead was called
}

func newPreader(f *os.File) (preader, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return preader{}, err
	}
	var p preader
	if err := rc.Control(func(fd uintptr) { p.fd = int(fd) }); err != nil {
		return preader{}, err
	}
	return p, nil
}

// mapRead maps the file read-only, as long as it is now, so that later
// reads copy from the page cache without a system call. It is for a
// preallocated segment, whose file is as long as it will ever be while it
// is written: a reader reads only the records written (below the
// segment's end), which also stay inside the file when sealing cuts it to
// its records. Reading a page beyond the file's end (or one the kernel
// cannot read back from the disk) faults; readAt turns the fault into an
// error. Only the first call does anything; on failure reads stay preads.
func (p *preader) mapRead() {
	if p.tried {
		return
	}
	p.tried = true
	var st unix.Stat_t
	if unix.Fstat(p.fd, &st) != nil || st.Size <= 0 || st.Size > math.MaxInt {
		return
	}
	if m, err := unix.Mmap(p.fd, 0, int(st.Size), unix.PROT_READ, unix.MAP_SHARED); err == nil {
		p.m = m
	}
}

// readAt reads into b from off with one pread(2) (again if interrupted),
// or a copy from the mapping: fewer bytes than len(b) is what the file
// holds there, 0 its end.
func (p *preader) readAt(b []byte, off int64) (int, error) {
	if p.m != nil {
		return copyMapped(b, p.m, off)
	}
	for {
		n, err := unix.Pread(p.fd, b, off)
		if err == unix.EINTR {
			continue
		}
		return max(n, 0), err
	}
}

// copyMapped copies m[off:] into b. A fault while copying (the page is
// past the file's end, or could not be read back) is returned as an
// error instead of crashing the process.
func copyMapped(b, m []byte, off int64) (n int, err error) {
	if off >= int64(len(m)) {
		return 0, nil
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			n, err = 0, fmt.Errorf("fault reading the mapped file at offset %d: %v", off, r)
		}
	}()
	return copy(b, m[off:]), nil
}

// mapped reports whether reads copy from a mapping.
func (p *preader) mapped() bool { return p.m != nil }

// close unmaps the file (the descriptor is the caller's to close).
func (p *preader) close() {
	if p.m != nil {
		_ = unix.Munmap(p.m)
		p.m = nil
	}
}

// mapFile reserves the disk space for size bytes of f (fallocate(2), which
// also sets the file's size) and maps them shared and writable, so that
// writing a record is a copy into the page cache without a system call.
// Because the blocks are allocated up front, a copy into the mapping never
// needs space the file system does not have (a full disk would otherwise
// show as SIGBUS, not as an error). On failure f is cut back to keep and
// nothing is mapped: the caller writes with pwrite(2) instead.
func mapFile(f *os.File, keep, size int64) ([]byte, error) {
	fd := int(f.Fd())
	if err := unix.Fallocate(fd, 0, 0, size); err != nil {
		_ = f.Truncate(keep)
		return nil, fmt.Errorf("fallocate: %w", err)
	}
	b, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		_ = f.Truncate(keep)
		return nil, fmt.Errorf("mmap: %w", err)
	}
	return b, nil
}

// unmapFile undoes mapFile's mapping. The pages written through it stay in
// the page cache and reach the disk as written ones do.
func unmapFile(b []byte) error { return unix.Munmap(b) }

// prefault makes b's pages present and writable in the page tables, as a
// write would, without changing their content (MADV_POPULATE_WRITE, Linux
// 5.14+): one system call instead of a write fault per page.
func prefault(b []byte) error { return unix.Madvise(b, unix.MADV_POPULATE_WRITE) }
