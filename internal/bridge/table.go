package bridge

import (
	"github.com/semprop/semprop/internal/capture"
)

// Kernel op codes: fanotify event mask bits as in linux/fanotify.h. They are
// declared here (not taken from golang.org/x/sys/unix) so the table is the
// same on every platform; a linux test checks them against unix.FAN_*.
const (
	FanModify     uint64 = 0x00000002
	FanAttrib     uint64 = 0x00000004
	FanCloseWrite uint64 = 0x00000008
	FanMovedFrom  uint64 = 0x00000040
	FanMovedTo    uint64 = 0x00000080
	FanCreate     uint64 = 0x00000100
	FanDelete     uint64 = 0x00000200
	FanDeleteSelf uint64 = 0x00000400
	FanMoveSelf   uint64 = 0x00000800
	FanQOverflow  uint64 = 0x00004000
	FanRename     uint64 = 0x10000000
	FanOnDir      uint64 = 0x40000000
)

// FUSE op codes as in linux/fuse.h (go-fuse names them _OP_*).
const (
	FuseSetattr       uint64 = 4
	FuseSymlink       uint64 = 6
	FuseMknod         uint64 = 8
	FuseMkdir         uint64 = 9
	FuseUnlink        uint64 = 10
	FuseRmdir         uint64 = 11
	FuseRename        uint64 = 12
	FuseLink          uint64 = 13
	FuseWrite         uint64 = 16
	FuseRelease       uint64 = 18
	FuseSetxattr      uint64 = 21
	FuseRemovexattr   uint64 = 24
	FuseFlush         uint64 = 25
	FuseCreate        uint64 = 35
	FuseFallocate     uint64 = 43
	FuseRename2       uint64 = 45
	FuseCopyFileRange uint64 = 47
)

// KernelRow is one row of the kernel half of the translation table: an
// event whose mask contains all bits of Mask (and FanOnDir exactly when Dir)
// is the operation Kind. Rows are tried in order; the first match wins, so a
// merged mask (e.g. CREATE|DELETE, which the kernel boundary resolves by
// stat before it emits) maps to the first row it contains.
type KernelRow struct {
	Name string
	Mask uint64
	Dir  bool
	Kind capture.Kind
}

// FUSERow is one row of the FUSE half of the translation table.
type FUSERow struct {
	Name   string
	Opcode uint64
	Kind   capture.Kind
}

// InvalKind names one FUSE cache invalidation call.
type InvalKind uint8

// The invalidations (the Invalidator methods).
const (
	InvalNone    InvalKind = iota
	InvalContent           // InvalidateContent(rel): data and attributes of a file or dir
	InvalEntry             // InvalidateEntry(relDir, name): a name now exists (or changed)
	InvalDelete            // InvalidateDelete(relDir, name): a name is gone
)

// String returns "content", "entry", "delete" or "none".
func (k InvalKind) String() string {
	switch k {
	case InvalContent:
		return "content"
	case InvalEntry:
		return "entry"
	case InvalDelete:
		return "delete"
	}
	return "none"
}

// InvalRow is the reverse direction: how a change seen only by the kernel
// (made directly on the backing tree) is pushed into the FUSE cache. OldPath
// applies to the operation's OldPath (rename source), Path to its Path.
type InvalRow struct {
	Kind    capture.Kind
	OldPath InvalKind
	Path    InvalKind
}

// KernelTable maps fanotify masks to operations. It is data: read-only.
var KernelTable = []KernelRow{
	{"FAN_Q_OVERFLOW", FanQOverflow, false, capture.KindOverflow},
	{"FAN_RENAME|FAN_ONDIR", FanRename, true, capture.KindRename},
	{"FAN_RENAME", FanRename, false, capture.KindRename},
	{"FAN_MOVED_TO|FAN_ONDIR", FanMovedTo, true, capture.KindRename},
	{"FAN_MOVED_TO", FanMovedTo, false, capture.KindRename},
	{"FAN_CREATE|FAN_ONDIR", FanCreate, true, capture.KindMkdir},
	{"FAN_CREATE", FanCreate, false, capture.KindCreate},
	{"FAN_DELETE|FAN_ONDIR", FanDelete, true, capture.KindRmdir},
	{"FAN_DELETE", FanDelete, false, capture.KindDelete},
	{"FAN_CLOSE_WRITE", FanCloseWrite, false, capture.KindWrite},
	{"FAN_MODIFY", FanModify, false, capture.KindWrite},
	{"FAN_ATTRIB|FAN_ONDIR", FanAttrib, true, capture.KindAttrib},
	{"FAN_ATTRIB", FanAttrib, false, capture.KindAttrib},
}

// FUSETable maps FUSE op codes to operations. It is data: read-only.
var FUSETable = []FUSERow{
	{"CREATE", FuseCreate, capture.KindCreate},
	{"MKNOD", FuseMknod, capture.KindCreate},
	{"MKDIR", FuseMkdir, capture.KindMkdir},
	{"WRITE", FuseWrite, capture.KindWrite},
	{"FLUSH", FuseFlush, capture.KindWrite},
	{"RELEASE", FuseRelease, capture.KindWrite},
	{"FALLOCATE", FuseFallocate, capture.KindWrite},
	{"COPY_FILE_RANGE", FuseCopyFileRange, capture.KindWrite},
	{"SETATTR", FuseSetattr, capture.KindAttrib},
	{"SETXATTR", FuseSetxattr, capture.KindAttrib},
	{"REMOVEXATTR", FuseRemovexattr, capture.KindAttrib},
	{"RENAME", FuseRename, capture.KindRename},
	{"RENAME2", FuseRename2, capture.KindRename},
	{"UNLINK", FuseUnlink, capture.KindDelete},
	{"RMDIR", FuseRmdir, capture.KindRmdir},
	{"LINK", FuseLink, capture.KindLink},
	{"SYMLINK", FuseSymlink, capture.KindSymlink},
}

// InvalTable is the reverse direction, canonical operation → FUSE cache
// invalidation. Kinds not listed (overflow, rescan) invalidate nothing. It is
// data: read-only.
var InvalTable = []InvalRow{
	{capture.KindCreate, InvalNone, InvalEntry},
	{capture.KindWrite, InvalNone, InvalContent},
	{capture.KindAttrib, InvalNone, InvalContent},
	{capture.KindRename, InvalDelete, InvalEntry},
	{capture.KindDelete, InvalNone, InvalDelete},
	{capture.KindMkdir, InvalNone, InvalEntry},
	{capture.KindRmdir, InvalNone, InvalDelete},
	{capture.KindLink, InvalNone, InvalEntry},
	{capture.KindSymlink, InvalNone, InvalEntry},
}

// Lookup tables built once from the data above.
var (
	fuseByOpcode [64]capture.Kind
	invalByKind  [capture.KindRescan + 1]InvalRow
)

func init() {
	for _, r := range FUSETable {
		fuseByOpcode[r.Opcode] = r.Kind
	}
	for _, r := range InvalTable {
		invalByKind[r.Kind] = r
	}
}

// KernelKind returns the operation a fanotify mask reports, or KindNone.
// It is safe for concurrent use.
func KernelKind(mask uint64) capture.Kind {
	dir := mask&FanOnDir != 0
	for i := range KernelTable {
		r := &KernelTable[i]
		if mask&r.Mask == r.Mask && r.Dir == dir {
			return r.Kind
		}
	}
	return capture.KindNone
}

// FUSEKind returns the operation a FUSE op code reports, or KindNone.
// It is safe for concurrent use.
func FUSEKind(opcode uint64) capture.Kind {
	if opcode < uint64(len(fuseByOpcode)) {
		return fuseByOpcode[opcode]
	}
	return capture.KindNone
}

// Invalidation returns the FUSE cache invalidations a kernel-only operation
// of kind k needs. It is safe for concurrent use.
func Invalidation(k capture.Kind) InvalRow {
	if int(k) < len(invalByKind) {
		return invalByKind[k]
	}
	return InvalRow{Kind: k}
}

// rawKind resolves the operation of an op whose boundary left Kind unset
// from its raw code.
func rawKind(op *capture.Op) capture.Kind {
	switch op.Boundary {
	case boundaryKernel:
		return KernelKind(op.Raw)
	case boundaryFUSE:
		return FUSEKind(op.Raw)
	}
	return capture.KindNone
}
