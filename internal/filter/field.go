package filter

import (
	"slices"

	"github.com/semprop/semprop/event"
)

// fieldID names a built-in attribute; fieldAttr is an extension attribute.
type fieldID uint8

const (
	fieldAttr fieldID = iota
	fieldID_
	fieldType
	fieldSource
	fieldSubject
	fieldDataContentType
	fieldBoundary
	fieldBoundaries
	fieldPriority
	fieldComm
	fieldExe
	fieldOldPath
	fieldTarget
	// numeric fields from here on
	fieldSeq
	fieldPID
	fieldTID
	fieldUID
	fieldGID
	fieldInode
	fieldSize
	fieldBytes
	fieldOffset
	fieldLength
	fieldMode
)

// A field is one attribute of an event that filters can read, by its
// CloudEvents name. String-valued fields are read with strVal, numeric ones
// with numVal; the priority has both (its name and its rank). Any name that
// is not a built-in attribute reads the extension attribute of that name
// from Event.Attrs. Accessors are switches, not closures, so that a
// predicate costs one indirect call.
type field struct {
	name string
	id   fieldID
	bit  uint32 // bit in readSet.fields; 0 for extension attributes
}

// numeric reports whether the field's canonical form is a number.
func (f *field) numeric() bool { return f.id >= fieldSeq }

// hasNum reports whether numVal reads the field.
func (f *field) hasNum() bool { return f.id >= fieldSeq || f.id == fieldPriority }

func known(ev *event.Event, has event.Fields, v int64) (int64, bool) {
	return v, ev.Context.Known&has != 0
}

// numVal reads a numeric field (or the priority's rank).
func (f *field) numVal(ev *event.Event) (int64, bool) {
	c := &ev.Context
	switch f.id {
	case fieldPriority:
		return int64(ev.Priority), true
	case fieldSeq:
		return int64(ev.Seq), ev.Seq != 0
	case fieldPID:
		return known(ev, event.HasPID, int64(c.PID))
	case fieldTID:
		return known(ev, event.HasTID, int64(c.TID))
	case fieldUID:
		return known(ev, event.HasUID, int64(c.UID))
	case fieldGID:
		return known(ev, event.HasGID, int64(c.GID))
	case fieldInode:
		return known(ev, event.HasInode, int64(c.Inode))
	case fieldSize:
		return known(ev, event.HasSize, c.Size)
	case fieldBytes:
		return known(ev, event.HasBytes, c.Bytes)
	case fieldOffset:
		return known(ev, event.HasOffset, c.Offset)
	case fieldLength:
		return known(ev, event.HasLength, c.Length)
	case fieldMode:
		return known(ev, event.HasMode, int64(c.Mode))
	}
	return 0, false
}

// strVal reads a string field; absent strings are reported as not present.
func (f *field) strVal(ev *event.Event) (string, bool) {
	var s string
	switch f.id {
	case fieldAttr:
		return ev.Attr(f.name)
	case fieldID_:
		if ev.ID.IsZero() {
			return "", false
		}
		return ev.ID.String(), true
	case fieldType:
		s = ev.Type
	case fieldSource:
		s = ev.Source
	case fieldSubject:
		s = ev.Subject
	case fieldDataContentType:
		s = ev.DataContentType
	case fieldBoundary:
		s = ev.Boundary.String()
	case fieldBoundaries:
		s = ev.Boundaries.String()
	case fieldPriority:
		return ev.Priority.String(), true
	case fieldComm:
		s = ev.Context.Comm
	case fieldExe:
		s = ev.Context.Exe
	case fieldOldPath:
		s = ev.Context.OldPath
	case fieldTarget:
		s = ev.Context.Target
	}
	return s, s != ""
}

// builtins lists the event attributes by name; "path" is an alias of
// "subject".
var builtins = func() map[string]*field {
	names := map[fieldID]string{
		fieldID_: "id", fieldType: "type", fieldSource: "source", fieldSubject: "subject",
		fieldDataContentType: "datacontenttype", fieldBoundary: "boundary", fieldBoundaries: "boundaries",
		fieldPriority: "priority", fieldComm: "comm", fieldExe: "exe", fieldOldPath: "oldpath",
		fieldTarget: "target", fieldSeq: "seq", fieldPID: "pid", fieldTID: "tid", fieldUID: "uid",
		fieldGID: "gid", fieldInode: "inode", fieldSize: "size", fieldBytes: "bytes",
		fieldOffset: "offset", fieldLength: "length", fieldMode: "mode",
	}
	m := make(map[string]*field, len(names)+1)
	for id, name := range names {
		m[name] = &field{name: name, id: id, bit: 1 << id}
	}
	m["path"] = m["subject"]
	return m
}()

// lookupField returns the field called name: a built-in attribute or an
// extension attribute. It fails for names that cannot be CloudEvents
// attribute names.
func lookupField(name string) (*field, error) {
	if f, ok := builtins[name]; ok {
		return f, nil
	}
	if !validAttrName(name) {
		return nil, errorf(ErrAttribute, "%q (attribute names are 1-20 lower-case letters or digits)", name)
	}
	return &field{name: name, id: fieldAttr}, nil
}

func validAttrName(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// number reads f as an integer: numeric fields directly, string fields by
// parsing their value.
func (f *field) number(ev *event.Event) (int64, bool) {
	if f.hasNum() {
		return f.numVal(ev)
	}
	s, ok := f.strVal(ev)
	if !ok {
		return 0, false
	}
	return parseInt(s)
}

// parseInt parses a decimal integer without allocating on failure.
func parseInt(s string) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	neg := s[0] == '-'
	if neg || s[0] == '+' {
		s = s[1:]
		if s == "" {
			return 0, false
		}
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// readSet is the set of fields a filter reads: an expression fills only
// those into its environment, and redaction checks what a selector reveals.
type readSet struct {
	fields  uint32
	attrs   []string // extension attributes, sorted, unique
	unknown bool     // the filter reads something it cannot name
}

func (f *field) reads() readSet {
	if f.bit != 0 {
		return readSet{fields: f.bit}
	}
	return readSet{attrs: []string{f.name}}
}

func (r readSet) union(o readSet) readSet {
	out := readSet{fields: r.fields | o.fields, unknown: r.unknown || o.unknown}
	out.attrs = append(append([]string(nil), r.attrs...), o.attrs...)
	slices.Sort(out.attrs)
	out.attrs = slices.Compact(out.attrs)
	return out
}
