package fusefs

import (
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
)

type invalKind uint8

const (
	invalContent invalKind = iota
	invalEntry
	invalDelete
)

type invalReq struct {
	kind      invalKind
	dir, name string // content: dir is the node's path
}

// InvalidateContent asks the kernel to drop cached data and attributes of
// the file at rel (relative to the backing root, "" = root), after it was
// changed directly on the backing tree. It queues the request and returns at
// once; a goroutine of f sends it (a full queue drops the request and counts
// it). Safe for concurrent use, also from a FUSE handler.
func (f *FS) InvalidateContent(rel string) { f.enqueue(invalReq{kind: invalContent, dir: rel}) }

// InvalidateEntry asks the kernel to forget the cached name relDir/name (it
// was created, renamed or replaced on the backing tree). Queued like
// InvalidateContent.
func (f *FS) InvalidateEntry(relDir, name string) {
	f.enqueue(invalReq{kind: invalEntry, dir: relDir, name: name})
}

// InvalidateDelete tells the kernel that relDir/name was removed from the
// backing tree (NotifyDelete, or NotifyEntry when the kernel does not know
// the file). Queued like InvalidateContent.
func (f *FS) InvalidateDelete(relDir, name string) {
	f.enqueue(invalReq{kind: invalDelete, dir: relDir, name: name})
}

func (f *FS) enqueue(r invalReq) {
	select {
	case <-f.stop:
		f.st.invDrop.Add(1)
		return
	default:
	}
	select {
	case f.inval <- r:
		f.st.invQueued.Add(1)
	default:
		f.st.invDrop.Add(1)
	}
}

// invalidator sends queued invalidations until Unmount. It is the only
// goroutine that writes notifications to the kernel, and it is never a FUSE
// handler, so a notification that waits for a lock held by a request in
// flight cannot deadlock the server.
func (f *FS) invalidator() {
	defer f.wg.Done()
	for {
		select {
		case <-f.stop:
			return
		case r := <-f.inval:
			f.send(r)
		}
	}
}

func (f *FS) send(r invalReq) {
	dir := f.lookupRel(r.dir)
	if dir == nil {
		f.st.invSkipped.Add(1) // the kernel has nothing cached under it
		return
	}
	var errno syscall.Errno
	switch r.kind {
	case invalContent:
		errno = dir.NotifyContent(0, 0)
	case invalEntry:
		errno = dir.NotifyEntry(r.name)
	case invalDelete:
		if ch := dir.GetChild(r.name); ch != nil {
			if errno = dir.NotifyDelete(r.name, ch); errno == 0 {
				break
			}
		}
		errno = dir.NotifyEntry(r.name)
	}
	if errno != 0 {
		f.st.invFailed.Add(1)
		if errno != syscall.ENOENT {
			f.log.Debug("invalidation failed", "kind", r.kind, "dir", r.dir, "name", r.name, "err", errno)
		}
		return
	}
	f.st.invSent.Add(1)
}

// lookupRel walks the inode tree the kernel knows from the root.
func (f *FS) lookupRel(rel string) *fs.Inode {
	in := f.root
	if rel == "" || rel == "." {
		return in
	}
	for part := range strings.SplitSeq(rel, "/") {
		if part == "" || part == "." {
			continue
		}
		if in = in.GetChild(part); in == nil {
			return nil
		}
	}
	return in
}
