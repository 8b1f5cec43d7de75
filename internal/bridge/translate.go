package bridge

import (
	"strconv"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
)

const (
	boundaryKernel = event.BoundaryKernel
	boundaryFUSE   = event.BoundaryFUSE
)

// Extension attributes the bridge sets.
const (
	AttrCount  = "count"  // fs.overflow / fs.rescan: events lost, changes found
	AttrIsDir  = "isdir"  // "true" on fs.rename / fs.attrib of a directory
	AttrReason = "reason" // fs.overflow: why events were lost (capture.Reason*)
)

// contextFields are the Known bits an Op can carry.
const contextFields = event.HasPID | event.HasTID | event.HasUID | event.HasGID |
	event.HasInode | event.HasSize | event.HasBytes | event.HasOffset |
	event.HasLength | event.HasMode

// Translate turns one raw op into its canonical event in dst, overwriting
// every field of dst but reusing dst.Attrs' storage: Type from the
// translation table (op.Kind, or op.Raw when the boundary left Kind unset),
// Subject = op.Path as the boundary saw it, Time, Boundary and Boundaries
// (the op's own boundary), FlagRescan, the Context fields present per
// op.Known, OldPath and Target, and the count (overflow, rescan), reason
// (overflow) and isdir attributes. Source, ID and HLC are left empty: the bridge sets Source, the
// propagation manager the rest. It allocates nothing when dst is reused,
// except to format a count ≥ 100. It is safe for concurrent use on distinct
// dst values.
func Translate(op *capture.Op, dst *event.Event) {
	attrs := dst.Attrs[:0]
	*dst = event.Event{}
	k := op.Kind
	if k == capture.KindNone {
		k = rawKind(op)
	}
	dst.Type = k.Type()
	dst.Subject = op.Path
	dst.Time = op.Time
	dst.Boundary = op.Boundary
	dst.Boundaries = event.Boundaries(0).Add(op.Boundary)
	if op.Rescan {
		dst.Flags |= event.FlagRescan
	}
	c := &dst.Context
	c.Known = op.Known & contextFields
	c.PID, c.TID, c.UID, c.GID = op.PID, op.TID, op.UID, op.GID
	c.Comm, c.Exe = op.Comm, op.Exe
	c.Inode, c.Size, c.Mode = op.Inode, op.Size, op.Mode
	c.Bytes, c.Offset, c.Length = op.Bytes, op.Offset, op.Length
	c.OldPath, c.Target = op.OldPath, op.Target
	if k == capture.KindOverflow || k == capture.KindRescan || op.Count != 0 {
		attrs = append(attrs, event.Attr{Key: AttrCount, Value: strconv.FormatInt(op.Count, 10)})
	}
	if op.Reason != "" {
		attrs = append(attrs, event.Attr{Key: AttrReason, Value: op.Reason})
	}
	if op.IsDir && (k == capture.KindRename || k == capture.KindAttrib) {
		attrs = append(attrs, event.Attr{Key: AttrIsDir, Value: "true"})
	}
	if cap(attrs) > 0 {
		dst.Attrs = attrs // keep the storage for the next reuse
	}
}
