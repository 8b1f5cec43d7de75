// Package fusefs is the FUSE boundary: a go-fuse v2 loopback of a backing
// directory, mounted at a mount point, that reports every mutating operation
// made through the mount as a capture.Op with the caller's context (process
// id, thread id, uid, gid, comm, exe).
//
// # What is reported
//
// Paths are under the mount point (Mountpoint + the path relative to the
// backing root), as the mount's inode tree has them when the operation is
// served. Directories' paths are cached and dropped after every rename and
// rmdir through the mount (a file's path is its name under its directory's
// cached path): a handler does not walk up the tree taking each ancestor's
// lock. One Op per logical operation:
//
//	create, mknod          KindCreate (only when the name did not exist)
//	mkdir / rmdir          KindMkdir / KindRmdir (IsDir)
//	unlink                 KindDelete
//	rename                 KindRename (OldPath → Path); RENAME_EXCHANGE is
//	                       reported as two renames, a→b then b→a
//	link                   KindLink (OldPath = the existing name)
//	symlink                KindSymlink (Target)
//	chmod, chown, utimens  KindAttrib
//	setxattr, removexattr  KindAttrib
//	truncate(path)         KindWrite with Size: a size change is a data change
//	                       (fanotify reports it as FAN_MODIFY too, so the
//	                       bridge can pair the two views). A truncate through
//	                       an open handle (ftruncate, or open with O_TRUNC: the
//	                       mount negotiates atomic O_TRUNC so it arrives with
//	                       the OPEN) is folded into that handle's KindWrite,
//	                       with Bytes 0 if nothing was written.
//	write                  KindWrite, one per open-write-close (below)
//
// # Writes
//
// All writes through one open file (one FUSE file handle, which dup'd
// descriptors share) are coalesced into a single KindWrite, emitted when the
// caller closes the file (FUSE FLUSH, which is synchronous with close(2), so
// the event is ordered before anything the caller does afterwards), with
// Bytes = total bytes written and Offset/Length = the written range (lowest
// offset to highest end). A handle with nothing to report emits nothing; a
// second flush of the same handle (a dup'd descriptor closed later) emits
// only if new data arrived since the first. Anything still pending at
// RELEASE (e.g. data written through a shared mapping after close) is
// emitted then. The context of a KindWrite is the last writer's (the thread
// of the last WRITE request), else the closer's, else the opener's.
//
// Writeback caching is never enabled: with it, the kernel batches writes and
// sends them later with pid 0, which hides the caller.
//
// # Passthrough
//
// With Options.Passthrough (kernel ≥ 6.9, root), go-fuse registers the
// backing file descriptor of each opened file with the kernel (the handle
// implements fs.FilePassthroughFder) and the kernel reads and writes the
// backing file directly: the server sees opens, creates, setattr and
// flushes, but no data. The kernel boundary sees those writes with the
// writer's pid. To yield the same logical events in both modes, a handle
// opened for writing records the backing file's size and mtime at
// open and compares them at flush: if they changed, it emits the same single
// KindWrite, with Size but without Bytes/Offset/Length (Known lacks HasBytes),
// which the bridge fills in from the kernel view. A change another handle
// (or a truncate by path) makes through the mount is not such a change:
// that one reports it, and until it has, the file's node is claimed and a
// handle that finds the file changed leaves it alone (a release arrives
// after close(2) has returned, while the caller may already be changing
// the file through another descriptor). If passthrough is
// requested but the kernel refuses it, Mount logs a warning and runs without
// it; FS.Passthrough reports what is in effect.
//
// A file created through the mount with passthrough in effect is opened on
// the backing tree read-only: the kernel writes through a backing file it
// opens itself with the caller's flags, and a writable server descriptor
// would only add a close-write of the daemon's own for the kernel boundary
// at every release (one record per file copied in). The few
// operations the server must write itself through the handle (a WRITE the
// kernel did not pass through, ftruncate, fallocate, the target of
// copy_file_range) use a writable descriptor reopened on first need
// (handle_linux.go, anchor; TestCreateAnchor).
//
// # Ownership
//
// A name created through the mount belongs to the caller on the backing
// tree, as with the library's loopback; but the mount chowns it only when
// the kernel did not already give it the caller's uid and gid (root creating
// as root needs nothing). The library chowns every new name: a syscall on
// each create's critical path, an extra attribute-change record for the
// kernel boundary, and a cleared set-user-ID/set-group-ID bit on a file root
// created with one (create_linux.go; TestCreateOwner).
//
// # Cache timeouts and invalidation
//
// EntryTimeout and AttrTimeout (default 1s) let the kernel cache names and
// attributes. Changes made through the mount keep those caches right; changes
// made directly on the backing tree do not, until the timeout expires or the
// bridge calls InvalidateContent/InvalidateEntry/InvalidateDelete. Long
// timeouts make the mount faster and rely entirely on invalidation. What goes
// stale, measured on Linux 6.18: stat(2) shows the cached size and times; a
// removed or renamed name still resolves (to a file that is gone); pages a
// process already holds in an open file stay cached (without passthrough).
// Data pages are not kept across opens (no FOPEN_KEEP_CACHE), and a read past
// the cached size refreshes it, so a fresh open-read sees new data. Failed
// lookups are not cached, so a name created on the backing tree is visible
// at once.
//
// # Limits
//
// FUSE names an inode, not the name the caller used: for a file with several
// hard links, ops that address the inode (write, setattr, xattrs) carry the
// name most recently created or looked up. Files made with O_TMPFILE are not
// reported (they have no name). In passthrough mode a change made directly on
// the backing tree while the file is open for writing through the mount is
// reported at close as that writer's KindWrite; and when a file is changed
// through two descriptors at once, one of them through the server (a
// truncate, a write the kernel did not pass through), the other's
// passed-through writes are folded into that one's KindWrite. With
// Options.Procs, Comm and Exe come from the shared process identity cache
// (package procinfo):
// Comm is the process's name (its main thread's, as on the kernel
// boundary), an exec(2) is followed at once, and a caller that exited
// before its operation was served (a RELEASE) is still known. Without it
// they come from /proc (Comm is the calling thread's name), cached per
// thread for 250ms, so an exec right after an op may be attributed to the
// old program.
//
// # The guard
//
// With Options.Guard, every mutating operation first asks the guard
// (package guard) whether its caller is listed; a listed caller gets
// EPERM and nothing is changed or reported. With nobody listed this is one
// atomic load. Reads, lookups and listings are never refused. A write
// through a descriptor opened before its process was listed is refused
// when it reaches the server; with passthrough such writes go to the
// backing file without the server, so it is the refused open for writing
// that stops a listed process (a descriptor it already holds keeps
// working until it is closed). With Guard.Preserving, the guard is handed
// each file just before an unlink, a rename over it, a truncate or an
// open with O_TRUNC destroys it (TestGuardRefuses, TestGuardPreserve).
//
// # Pitfalls (see go-fuse fs/api.go)
//
// The serving process must never access its own mount: that deadlocks. The
// handlers here only touch the backing tree and /proc; invalidations are
// sent from a goroutine owned by FS, never from inside a handler.
package fusefs

import (
	"errors"
	"log/slog"
	"time"

	"github.com/semprop/semprop/internal/capture"
	"github.com/semprop/semprop/internal/capture/procinfo"
)

// Errors returned by Mount.
var (
	ErrUnsupported    = errors.New("fusefs: FUSE mounts are only supported on linux")
	ErrNoSink         = errors.New("fusefs: options need a sink")
	ErrNotDir         = errors.New("fusefs: not a directory")
	ErrMountpointBusy = errors.New("fusefs: mount point busy")
	ErrOverlap        = errors.New("fusefs: backing and mount point overlap (the server would access its own mount)")
)

// Default cache timeouts.
const (
	DefaultEntryTimeout = time.Second
	DefaultAttrTimeout  = time.Second
)

// Options configure Mount.
type Options struct {
	Backing    string // the directory that is looped back (must exist)
	Mountpoint string // where it is mounted (must exist unless CreateMountpoint)

	// CreateMountpoint creates a missing mount point (and its missing
	// parents) once every check has passed, with a log line; what Mount
	// created is removed again if the mount then fails.
	CreateMountpoint bool

	Sink capture.Sink // receives one Op per mutating operation; required

	// Passthrough asks for FUSE passthrough of file data (kernel ≥ 6.9, as
	// root). The caller chooses the default (semprop turns it on).
	Passthrough bool

	Logger *slog.Logger // nil: slog.Default()
	Debug  bool         // log every FUSE request (very verbose)

	// EntryTimeout and AttrTimeout bound how long the kernel caches names
	// and attributes; zero means DefaultEntryTimeout/DefaultAttrTimeout, a
	// negative value disables caching. Changes made on the backing tree
	// directly are seen through the mount after the timeout, or at once after
	// an Invalidate call.
	EntryTimeout, AttrTimeout time.Duration

	// Guard, if set, is asked before every mutating operation: a caller
	// it lists is refused with EPERM, and a file that an operation is
	// about to destroy may be copied first (see Guard).
	Guard Guard

	// Procs, if set, is the process identity cache fed by the kernel's
	// process connector (procinfo.Start), shared with the kernel boundary:
	// a caller's comm and exe then follow its exec at once, and survive
	// it when an operation is served after it exited. Nil: they are read
	// from /proc and cached per thread for 250ms.
	Procs *procinfo.Cache

	// onRelease, for tests, is called when a handle is released, with
	// false before the release reports what changed and true after.
	onRelease func(done bool)
}

// Guard decides which callers may change files through the mount, and
// keeps a copy of what an operation is about to destroy. *guard.Guard
// implements it. Its methods are called from FUSE handlers, concurrently.
//
// Every mutating operation (create, mkdir, mknod, symlink, link, unlink,
// rmdir, rename, setattr, an open for writing or with O_TRUNC, write,
// setxattr, removexattr, fallocate, copy_file_range) first calls Active,
// which must be cheap (an atomic load): only when it is true is the
// caller's process resolved and Refuse asked. Reads are never refused.
// With passthrough, writes to a descriptor opened before the caller was
// listed go to the backing file without the server: refusing the open
// for writing is what stops them.
//
// When Preserving is true, Preserve is called before an unlink, a rename
// over an existing name, a size change (setattr) and an open with O_TRUNC,
// with the backing path, the path under the mount, the operation and the
// size the file is cut to (-1 for an unlink or a rename: all of it).
type Guard interface {
	Active() bool
	Refuse(pid int32, uid uint32, op string) bool
	Preserving() bool
	Preserve(backing, path, op string, newSize int64)
}

// Stats are counters of an FS since Mount. Ops counts the emitted ops per
// kind (index capture.Kind).
type Stats struct {
	Ops [capture.KindSymlink + 1]uint64

	WriteCalls      uint64 // FUSE WRITE requests served
	WritesCoalesced uint64 // WRITE requests folded into an already pending KindWrite
	BytesWritten    uint64 // bytes written through the server (not passthrough)

	PassthroughWrites uint64 // KindWrite ops detected by stat comparison (no byte count)
	Refused           uint64 // operations the guard refused (EPERM)
	UnknownCaller     uint64 // ops whose process could not be resolved from /proc

	InvalidationsQueued  uint64
	InvalidationsSent    uint64 // accepted by the kernel
	InvalidationsFailed  uint64 // the kernel returned an error (ENOENT = not cached: harmless)
	InvalidationsSkipped uint64 // the path is not known to the kernel: nothing cached
	InvalidationsDropped uint64 // the queue was full
}
