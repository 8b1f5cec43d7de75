package fanotify

import (
	"bytes"
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Directory listings of a read batch. Turning a record into ops needs to
// know whether its name still holds its object (see doc.go, "Merged
// records"), which costs an lstat per record. In a storm the reader is
// behind, the kernel has merged each create/write/close/delete cycle into
// one record, and the name is long gone: one listing of the directory,
// taken after the batch was read (so after each of its records was
// queued), says so for all of them. A name the listing holds is still
// stat'ed as before.
const (
	// listMin is how many records of one read batch in one directory
	// are stat'ed before the directory is listed for the rest: a listing
	// costs an open, two getdents and a close.
	listMin = 4
	// listChunk is one getdents call's buffer; listMax bounds a listing
	// (about 8,000 short names). A larger directory is not listed: its
	// records are stat'ed one by one.
	listChunk = 32 << 10
	listMax   = 256 << 10
)

// listing is the names of one directory at one moment.
type listing struct {
	ok    bool // false: the directory could not be listed (too large, gone, …)
	names map[string]struct{}
	buf   []byte // the getdents bytes the names' keys point into
}

// lister holds the listings of the batch being processed: of the first
// few directories with records that need a name check, each listed once
// it has had listMin of them (those are stat'ed). It allocates nothing
// once warm, and nothing for records outside Root (they never get here).
// It is owned by the reader goroutine.
type lister struct {
	mountFD int
	fds     *fdReserve
	c       *counters
	slots   [listSlots]dirSlot
	nslots  int
	free    []*listing
}

// listSlots is how many directories of one batch may be listed.
const listSlots = 4

// dirSlot is one directory of the batch.
type dirSlot struct {
	dfid []byte // aliases the read buffer: valid for the batch
	n    int    // records that needed a name check
	ls   *listing
}

func newLister(mountFD int, fds *fdReserve, c *counters) *lister {
	return &lister{mountFD: mountFD, fds: fds, c: c}
}

// needsName reports whether a record of mask is turned into ops with a
// check of its name (see tracker.apply).
func needsName(mask uint64) bool {
	return mask&(maskRename|maskOverflow) == 0 && mask&(maskCreate|maskDelete|maskCloseWrite|maskAttrib) != 0
}

// absent reports whether the name of a record of mask in directory dfid
// is known to be absent: the batch has had more than listMin such records
// there, and the directory's listing does not hold name. False means "not
// known": stat it.
func (l *lister) absent(mask uint64, dfid, name []byte) bool {
	if l == nil || !needsName(mask) {
		return false
	}
	var s *dirSlot
	for i := range l.nslots {
		if bytes.Equal(l.slots[i].dfid, dfid) {
			s = &l.slots[i]
			break
		}
	}
	if s == nil {
		if l.nslots == listSlots {
			return false
		}
		s = &l.slots[l.nslots]
		l.nslots++
		s.dfid = dfid
	}
	s.n++
	if s.n <= listMin {
		return false
	}
	if s.ls == nil {
		s.ls = l.list(dfid)
	}
	if !s.ls.ok {
		return false
	}
	_, there := s.ls.names[string(name)]
	return !there
}

// list reads the directory dfid names, opened by its handle (its path may
// be stale in the cache until a later record of this batch renames it).
func (l *lister) list(dfid []byte) *listing {
	var ls *listing
	if n := len(l.free); n > 0 {
		ls, l.free = l.free[n-1], l.free[:n-1]
	} else {
		ls = &listing{names: make(map[string]struct{})}
	}
	ls.ok = false
	typ, h, ok := handleOf(dfid)
	if !ok || len(h) == 0 {
		return ls
	}
	fd, err := l.fds.open(func() (int, error) {
		return openByHandleAt(l.mountFD, unix.NewFileHandle(typ, h), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	})
	if err != nil {
		return ls
	}
	defer l.fds.close(fd)
	l.c.listings.Add(1)
	b := ls.buf[:0]
	for {
		if cap(b)-len(b) < listChunk {
			if len(b)+listChunk > listMax {
				return ls // too large: stat one by one
			}
			nb := make([]byte, len(b), max(2*cap(b), len(b)+listChunk))
			copy(nb, b)
			b = nb
		}
		n, err := unix.Getdents(fd, b[len(b):cap(b)])
		if err != nil {
			return ls
		}
		if n <= 0 {
			break
		}
		b = b[:len(b)+n]
	}
	ls.buf = b
	// The keys alias ls.buf, which is not written again until the
	// listing is recycled (and its map cleared) at the end of the batch.
	for off := 0; off+19 <= len(b); {
		reclen := int(binary.NativeEndian.Uint16(b[off+16:]))
		if reclen < 19 || off+reclen > len(b) {
			return ls // malformed: not trusted
		}
		name := b[off+19 : off+reclen]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		if len(name) > 0 {
			ls.names[unsafe.String(&name[0], len(name))] = struct{}{}
		}
		off += reclen
	}
	ls.ok = true
	return ls
}

// done forgets the batch's listings; called at the end of every batch.
func (l *lister) done() {
	if l == nil {
		return
	}
	for i := range l.nslots {
		if ls := l.slots[i].ls; ls != nil {
			clear(ls.names)
			if len(l.free) < listSlots {
				l.free = append(l.free, ls)
			}
		}
		l.slots[i] = dirSlot{}
	}
	l.nslots = 0
}
