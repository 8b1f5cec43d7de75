// Package event defines semprop's canonical event: one flat struct that every
// boundary (kernel, FUSE, user, peer) produces and every consumer reads, with
// its identifiers, clocks, validation and the two codecs that carry it — a
// compact binary form for the journal and the cluster, and CloudEvents 1.0
// JSON at the HTTP edge (structured, batch and, for input, the HTTP binary
// content mode).
//
// The JSON decoders take untrusted input: they require what CloudEvents 1.0
// requires (specversion, id, source, type), refuse invalid Unicode rather
// than replace it, and keep JSON data compact. The structured encoding of
// any event is valid JSON on one line, so NDJSON and Server-Sent Events
// framing cannot break. CheckNetworkOrigin tells what only semprop itself
// may say about an event (capture context, fs.* and semprop.* types).
//
// An Event is a plain value: it is safe to read from many goroutines once it
// has been published, and must not be modified after that.
package event

import (
	"strings"
	"time"
)

// Event is one thing that happened, with its full context.
//
// The zero value is an empty event; the propagation manager fills ID, Time
// and HLC when they are absent. Seq is assigned by the sequencer and is zero
// until the event has been ordered.
type Event struct {
	ID ID // time-ordered 128-bit identifier (ULID) assigned by semprop
	// SourceID is the producer's own CloudEvents id when it is not a ULID
	// (e.g. a UUID from an SDK). On the wire "id" is SourceID when set.
	SourceID string
	Seq      uint64 // position in the total order; 0 until sequenced
	Type     string // dotted type, e.g. "fs.write" or "vector.insert"
	Source   string // URI of the producer, e.g. "semprop://host/fuse"
	Subject  string // the path for fs.* events
	Time     time.Time
	HLC      HLC

	Priority   Priority
	Boundary   Boundary   // the boundary that produced the event
	Boundaries Boundaries // every boundary that saw the operation
	Flags      Flags

	Context Context // process and file context; fields present per Context.Known
	Attrs   []Attr  // further extension attributes, in order

	DataContentType string
	// Data is the payload. Unless FlagDataBinary is set it holds one JSON
	// value (as CloudEvents "data"); with it, opaque bytes ("data_base64").
	Data []byte
}

// Attr is one extension attribute. Keys follow the CloudEvents rules for
// extension names: lower-case letters and digits, at most 20 characters.
type Attr struct {
	Key   string
	Value string
}

// Attr returns the value of the extension attribute key and whether it is set.
func (e *Event) Attr(key string) (string, bool) {
	for _, a := range e.Attrs {
		if a.Key == key {
			return a.Value, true
		}
	}
	return "", false
}

// SetAttr sets the extension attribute key, replacing an earlier value.
func (e *Event) SetAttr(key, value string) {
	for i := range e.Attrs {
		if e.Attrs[i].Key == key {
			e.Attrs[i].Value = value
			return
		}
	}
	e.Attrs = append(e.Attrs, Attr{Key: key, Value: value})
}

// Flags are boolean properties of an event.
type Flags uint8

const (
	// FlagDataBinary marks Data as opaque bytes rather than a JSON value.
	FlagDataBinary Flags = 1 << iota
	// FlagRescan marks an event synthesized by a rescan after an overflow,
	// not observed directly.
	FlagRescan
)

// Fields records which numeric fields of a Context are known. A field whose
// bit is clear is absent: pid 0 and uid 0 are real values.
type Fields uint16

// The numeric context fields.
const (
	HasPID Fields = 1 << iota
	HasTID
	HasUID
	HasGID
	HasInode
	HasSize
	HasBytes
	HasOffset
	HasLength
	HasMode
)

// Context is the process and file context of an event. Numeric fields are
// meaningful only when their bit is set in Known; strings when non-empty.
type Context struct {
	Known Fields

	PID  int32  // process id (thread group id) of the actor
	TID  int32  // thread id of the actor
	UID  uint32 // user id of the actor
	GID  uint32 // group id of the actor
	Comm string // short process name (/proc/PID/comm)
	Exe  string // executable path (/proc/PID/exe)

	Inode   uint64 // inode number of the file
	Size    int64  // file size after the operation
	Bytes   int64  // bytes written (fs.write)
	Offset  int64  // start of the written range (fs.write)
	Length  int64  // length of the written range (fs.write)
	Mode    uint32 // file mode bits, as st_mode
	OldPath string // previous path (fs.rename) or existing path (fs.link)
	Target  string // symlink target (fs.symlink)
}

// Has reports whether all fields in f are known.
func (c *Context) Has(f Fields) bool { return c.Known&f == f }

// SetPID sets the process id.
func (c *Context) SetPID(v int32) { c.PID = v; c.Known |= HasPID }

// SetTID sets the thread id.
func (c *Context) SetTID(v int32) { c.TID = v; c.Known |= HasTID }

// SetUID sets the user id.
func (c *Context) SetUID(v uint32) { c.UID = v; c.Known |= HasUID }

// SetGID sets the group id.
func (c *Context) SetGID(v uint32) { c.GID = v; c.Known |= HasGID }

// SetInode sets the inode number.
func (c *Context) SetInode(v uint64) { c.Inode = v; c.Known |= HasInode }

// SetSize sets the file size.
func (c *Context) SetSize(v int64) { c.Size = v; c.Known |= HasSize }

// SetBytes sets the number of bytes written.
func (c *Context) SetBytes(v int64) { c.Bytes = v; c.Known |= HasBytes }

// SetRange sets the written range [off, off+length).
func (c *Context) SetRange(off, length int64) {
	c.Offset, c.Length = off, length
	c.Known |= HasOffset | HasLength
}

// SetMode sets the file mode bits.
func (c *Context) SetMode(v uint32) { c.Mode = v; c.Known |= HasMode }

// Boundary names where an event was observed or produced.
type Boundary uint8

// The boundaries.
const (
	BoundaryNone   Boundary = iota
	BoundaryKernel          // fanotify (or inotify) on the backing file system
	BoundaryFUSE            // the FUSE mount, with the caller's context
	BoundaryUser            // published by an application (HTTP, SDK, CLI)
	BoundaryPeer            // received from another semprop instance
	boundaryCount
)

var boundaryNames = [boundaryCount]string{"", "kernel", "fuse", "user", "peer"}

// String returns the boundary's name as used on the wire ("kernel", "fuse", …).
func (b Boundary) String() string {
	if b < boundaryCount {
		return boundaryNames[b]
	}
	return "unknown"
}

// ParseBoundary parses a boundary name. The empty string is BoundaryNone.
func ParseBoundary(s string) (Boundary, bool) {
	for i, n := range boundaryNames {
		if n == s {
			return Boundary(i), true
		}
	}
	return BoundaryNone, false
}

// Boundaries is a set of boundaries.
type Boundaries uint8

// Add returns the set with b added.
func (s Boundaries) Add(b Boundary) Boundaries {
	if b == BoundaryNone || b >= boundaryCount {
		return s
	}
	return s | 1<<b
}

// Has reports whether b is in the set.
func (s Boundaries) Has(b Boundary) bool { return b < boundaryCount && s&(1<<b) != 0 }

// wireOrder is the order boundaries are listed in: the one closest to the
// caller first ("fuse,kernel").
var wireOrder = [...]Boundary{BoundaryFUSE, BoundaryKernel, BoundaryUser, BoundaryPeer}

// String lists the set as comma-separated names, e.g. "fuse,kernel".
func (s Boundaries) String() string {
	switch s {
	case 0:
		return ""
	case 1 << BoundaryKernel:
		return "kernel"
	case 1 << BoundaryFUSE:
		return "fuse"
	case 1<<BoundaryFUSE | 1<<BoundaryKernel:
		return "fuse,kernel"
	case 1 << BoundaryUser:
		return "user"
	}
	var sb strings.Builder
	for _, b := range wireOrder {
		if s.Has(b) {
			if sb.Len() > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(b.String())
		}
	}
	return sb.String()
}

// ParseBoundaries parses a comma-separated list of boundary names.
func ParseBoundaries(s string) (Boundaries, bool) {
	var set Boundaries
	if s == "" {
		return 0, true
	}
	for name := range strings.SplitSeq(s, ",") {
		b, ok := ParseBoundary(strings.TrimSpace(name))
		if !ok || b == BoundaryNone {
			return 0, false
		}
		set = set.Add(b)
	}
	return set, true
}

// Priority orders delivery: a critical event is never queued behind bulk
// ones. The zero value is PriorityNormal.
type Priority int8

// The priorities, lowest first.
const (
	PriorityBulk     Priority = -1
	PriorityNormal   Priority = 0
	PriorityHigh     Priority = 1
	PriorityCritical Priority = 2
)

// String returns "bulk", "normal", "high" or "critical".
func (p Priority) String() string {
	switch p {
	case PriorityBulk:
		return "bulk"
	case PriorityNormal:
		return "normal"
	case PriorityHigh:
		return "high"
	case PriorityCritical:
		return "critical"
	}
	return "unknown"
}

// ParsePriority parses a priority name; "" is PriorityNormal.
func ParsePriority(s string) (Priority, bool) {
	switch s {
	case "bulk":
		return PriorityBulk, true
	case "normal", "":
		return PriorityNormal, true
	case "high":
		return PriorityHigh, true
	case "critical":
		return PriorityCritical, true
	}
	return PriorityNormal, false
}

// File-system event types (docs/http-api.md, "Event JSON").
const (
	TypeCreate   = "fs.create"
	TypeWrite    = "fs.write"
	TypeAttrib   = "fs.attrib"
	TypeRename   = "fs.rename"
	TypeDelete   = "fs.delete"
	TypeMkdir    = "fs.mkdir"
	TypeRmdir    = "fs.rmdir"
	TypeLink     = "fs.link"
	TypeSymlink  = "fs.symlink"
	TypeOverflow = "fs.overflow"
	TypeRescan   = "fs.rescan"

	// TypeDeadLetter is published when a durable consumer gives up on an event.
	TypeDeadLetter = "semprop.deadletter"
)
