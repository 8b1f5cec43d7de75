// Package capture defines what a file-system boundary reports: an Op is one
// logical operation as the kernel (fanotify) or the FUSE mount observed it,
// before the bridge correlates the two views and turns it into an
// event.Event. The boundaries live in the sub-packages fanotify and fusefs.
package capture

import (
	"errors"
	"syscall"
	"time"

	"github.com/semprop/semprop/event"
)

// Kind is the logical operation an Op reports.
type Kind uint8

// The operations.
const (
	KindNone     Kind = iota
	KindCreate        // a regular file (or device, fifo, socket) was created
	KindWrite         // data or size changed: one per open-write-close; a truncate is a write
	KindAttrib        // metadata changed (mode, owner, times, xattrs)
	KindRename        // OldPath was renamed to Path
	KindDelete        // a non-directory was unlinked
	KindMkdir         // a directory was created
	KindRmdir         // a directory was removed
	KindLink          // a hard link Path to OldPath was made
	KindSymlink       // a symbolic link Path -> Target was made
	KindOverflow      // events were lost (Reason says why) and a rescan follows
	KindRescan        // summary of a rescan (Count = changes found)
	kindCount
)

var kindTypes = [kindCount]string{
	"", event.TypeCreate, event.TypeWrite, event.TypeAttrib, event.TypeRename,
	event.TypeDelete, event.TypeMkdir, event.TypeRmdir, event.TypeLink,
	event.TypeSymlink, event.TypeOverflow, event.TypeRescan,
}

// Type returns the canonical event type of k ("fs.create", …), or "" for KindNone.
func (k Kind) Type() string {
	if k < kindCount {
		return kindTypes[k]
	}
	return ""
}

// String returns the event type, or "none".
func (k Kind) String() string {
	if t := k.Type(); t != "" {
		return t
	}
	return "none"
}

// Op is one logical operation seen at one boundary. Paths are absolute and
// as that boundary sees them: the backing path for the kernel, the path under
// the mount point for FUSE. Numeric context fields are valid per Known (the
// same bits as event.Context).
type Op struct {
	Kind     Kind
	Boundary event.Boundary
	Time     time.Time // when the boundary observed the operation

	Path    string // the object's path (new path for renames and links)
	OldPath string // rename source; existing path for hard links
	Target  string // symlink target
	IsDir   bool

	Known event.Fields
	PID   int32 // process id (tgid) of the actor; the daemon's own pid marks FUSE shadows
	TID   int32
	UID   uint32
	GID   uint32
	Comm  string
	Exe   string

	Inode  uint64
	Size   int64
	Bytes  int64 // bytes written (KindWrite)
	Offset int64 // written range start (KindWrite)
	Length int64 // written range length (KindWrite)
	Mode   uint32

	Rescan bool   // synthesized by a rescan after an overflow
	Count  int64  // KindOverflow / KindRescan: how many (lost, changed); 0 on an overflow: not known
	Reason string // KindOverflow: why events were lost (ReasonQueue, ReasonEMFILE, …)
	Raw    uint64 // the boundary's own op code(s), e.g. fanotify mask bits; for diagnostics
}

// Reasons a boundary lost events, as KindOverflow ops carry them in Reason.
// Every loss, whatever its cause, is reported as a KindOverflow op; a
// boundary that can rescan follows it with one.
const (
	ReasonQueue   = "queue"   // the kernel's event queue overflowed
	ReasonEMFILE  = "emfile"  // the process had no free file descriptor
	ReasonENFILE  = "enfile"  // the system had no free file descriptor
	ReasonENOMEM  = "enomem"  // the kernel had no memory for the request
	ReasonResolve = "resolve" // a directory handle could not be resolved for another reason
	ReasonRead    = "read"    // reading the kernel queue failed
	ReasonParse   = "parse"   // the kernel sent a record that could not be decoded
	ReasonWatch   = "watch"   // a directory could not be watched (inotify watch limit)
	ReasonRescan  = "rescan"  // a rescan could not read part of the tree
	ReasonPublish = "publish" // events were given up after publishing failed
	ReasonInvalid = "invalid" // an op could not be turned into an event (no known kind)
)

// ReasonOf names the loss an error caused: ReasonEMFILE, ReasonENFILE or
// ReasonENOMEM for those errnos (wrapped or not), else def.
func ReasonOf(err error, def string) string {
	switch {
	case errors.Is(err, syscall.EMFILE):
		return ReasonEMFILE
	case errors.Is(err, syscall.ENFILE):
		return ReasonENFILE
	case errors.Is(err, syscall.ENOMEM):
		return ReasonENOMEM
	}
	return def
}

// Sink receives ops from a boundary. The sink owns op after Emit returns
// (boundaries make a new Op per call). Implementations must be safe for
// concurrent use and must not block for long: a boundary calls Emit from its
// read loop (kernel) or from inside a FUSE handler.
type Sink interface {
	Emit(op *Op)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(op *Op)

// Emit calls f(op).
func (f SinkFunc) Emit(op *Op) { f(op) }
