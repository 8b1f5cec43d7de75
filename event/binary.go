package event

import (
	"encoding/binary"
	"errors"
	"time"
)

// BinaryVersion is the version byte that starts every binary-encoded event.
// Decoders refuse versions they do not know.
const BinaryVersion = 1

// ErrBinary is wrapped by every binary decoding error.
var ErrBinary = errors.New("event: malformed binary event")

// presence bits of the binary header.
const (
	binTime = 1 << iota
	binHLC
)

// AppendBinary appends the compact binary form of e to b. The form is
// versioned (first byte BinaryVersion) and carries every field; it is what
// the journal and the cluster store. It never fails; the error is there to
// satisfy encoding.BinaryAppender.
//
// Layout (v1): version, presence bits, 16-byte ID, then varints and
// length-prefixed strings in a fixed order (see the code); context numbers
// only when their Known bit is set.
func (e *Event) AppendBinary(b []byte) ([]byte, error) {
	var pres uint64
	if !e.Time.IsZero() {
		pres |= binTime
	}
	if !e.HLC.IsZero() {
		pres |= binHLC
	}
	b = append(b, BinaryVersion)
	b = binary.AppendUvarint(b, pres)
	b = append(b, e.ID[:]...)
	b = binary.AppendUvarint(b, e.Seq)
	if pres&binTime != 0 {
		b = binary.AppendVarint(b, e.Time.UnixNano())
	}
	if pres&binHLC != 0 {
		b = binary.AppendVarint(b, e.HLC.Wall)
		b = binary.AppendUvarint(b, uint64(e.HLC.Logical))
	}
	b = append(b, byte(e.Priority), byte(e.Boundary), byte(e.Boundaries), byte(e.Flags))
	b = appendString(b, e.Type)
	b = appendString(b, e.Source)
	b = appendString(b, e.Subject)
	b = appendString(b, e.SourceID)
	b = appendString(b, e.DataContentType)

	c := &e.Context
	b = binary.AppendUvarint(b, uint64(c.Known))
	if c.Known&HasPID != 0 {
		b = binary.AppendVarint(b, int64(c.PID))
	}
	if c.Known&HasTID != 0 {
		b = binary.AppendVarint(b, int64(c.TID))
	}
	if c.Known&HasUID != 0 {
		b = binary.AppendUvarint(b, uint64(c.UID))
	}
	if c.Known&HasGID != 0 {
		b = binary.AppendUvarint(b, uint64(c.GID))
	}
	if c.Known&HasInode != 0 {
		b = binary.AppendUvarint(b, c.Inode)
	}
	if c.Known&HasSize != 0 {
		b = binary.AppendVarint(b, c.Size)
	}
	if c.Known&HasBytes != 0 {
		b = binary.AppendVarint(b, c.Bytes)
	}
	if c.Known&HasOffset != 0 {
		b = binary.AppendVarint(b, c.Offset)
	}
	if c.Known&HasLength != 0 {
		b = binary.AppendVarint(b, c.Length)
	}
	if c.Known&HasMode != 0 {
		b = binary.AppendUvarint(b, uint64(c.Mode))
	}
	b = appendString(b, c.Comm)
	b = appendString(b, c.Exe)
	b = appendString(b, c.OldPath)
	b = appendString(b, c.Target)

	b = binary.AppendUvarint(b, uint64(len(e.Attrs)))
	for _, a := range e.Attrs {
		b = appendString(b, a.Key)
		b = appendString(b, a.Value)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Data)))
	return append(b, e.Data...), nil
}

// BinarySizeBound returns an upper bound of the length AppendBinary
// appends for e (at most a few hundred bytes over it).
func (e *Event) BinarySizeBound() int {
	const fixed = 1 + 10 + 16 + 10 + 10 + 10 + 10 + 4 + 10 // version … flags, varints at their longest
	const perString = 10
	c := &e.Context
	n := fixed + 5*perString + len(e.Type) + len(e.Source) + len(e.Subject) + len(e.SourceID) + len(e.DataContentType) +
		10 + 10*10 + // known bits and the numeric context fields
		4*perString + len(c.Comm) + len(c.Exe) + len(c.OldPath) + len(c.Target) +
		10 + 10 + len(e.Data)
	for _, a := range e.Attrs {
		n += 2*perString + len(a.Key) + len(a.Value)
	}
	return n
}

// MarshalBinary returns the binary form of e.
func (e *Event) MarshalBinary() ([]byte, error) {
	return e.AppendBinary(make([]byte, 0, 128+len(e.Subject)+len(e.Data)))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// UnmarshalBinary decodes the binary form into e, replacing all its fields.
// It rejects unknown versions, truncated input, trailing bytes and fields
// out of range with an error wrapping ErrBinary; it never panics. The decoded
// event does not alias data. A string attribute equal to the one e held
// before keeps that string (no allocation): decoding a stream into one
// Event allocates only for what changes.
func (e *Event) UnmarshalBinary(data []byte) error {
	d := decoder{b: data}
	if len(data) == 0 {
		return d.fail("empty input")
	}
	if data[0] != BinaryVersion {
		return errors.Join(ErrBinary, errors.New("unknown version"))
	}
	d.b = data[1:]
	prev := prevStrings{e.Type, e.Source, e.Subject, e.SourceID, e.DataContentType,
		e.Context.Comm, e.Context.Exe, e.Context.OldPath, e.Context.Target}
	*e = Event{}
	pres := d.uvarint()
	if pres&^(binTime|binHLC) != 0 {
		return d.fail("unknown presence bits")
	}
	if len(d.b) < 16 {
		return d.fail("short id")
	}
	copy(e.ID[:], d.b)
	d.b = d.b[16:]
	e.Seq = d.uvarint()
	if pres&binTime != 0 {
		e.Time = time.Unix(0, d.varint()).UTC()
	}
	if pres&binHLC != 0 {
		e.HLC.Wall = d.varint()
		e.HLC.Logical = uint32(d.uvarintMax(1<<32 - 1))
		if e.HLC.IsZero() && d.err == nil {
			return d.fail("zero hlc marked present")
		}
	}
	if len(d.b) < 4 {
		return d.fail("short header")
	}
	e.Priority, e.Boundary, e.Boundaries, e.Flags = Priority(int8(d.b[0])), Boundary(d.b[1]), Boundaries(d.b[2]), Flags(d.b[3])
	d.b = d.b[4:]
	e.Type = d.stringOr(prev[0])
	e.Source = d.stringOr(prev[1])
	e.Subject = d.stringOr(prev[2])
	e.SourceID = d.stringOr(prev[3])
	e.DataContentType = d.stringOr(prev[4])

	c := &e.Context
	c.Known = Fields(d.uvarintMax(1<<16 - 1))
	if c.Known&HasPID != 0 {
		c.PID = int32(d.varintRange(-1<<31, 1<<31-1))
	}
	if c.Known&HasTID != 0 {
		c.TID = int32(d.varintRange(-1<<31, 1<<31-1))
	}
	if c.Known&HasUID != 0 {
		c.UID = uint32(d.uvarintMax(1<<32 - 1))
	}
	if c.Known&HasGID != 0 {
		c.GID = uint32(d.uvarintMax(1<<32 - 1))
	}
	if c.Known&HasInode != 0 {
		c.Inode = d.uvarint()
	}
	if c.Known&HasSize != 0 {
		c.Size = d.varint()
	}
	if c.Known&HasBytes != 0 {
		c.Bytes = d.varint()
	}
	if c.Known&HasOffset != 0 {
		c.Offset = d.varint()
	}
	if c.Known&HasLength != 0 {
		c.Length = d.varint()
	}
	if c.Known&HasMode != 0 {
		c.Mode = uint32(d.uvarintMax(1<<32 - 1))
	}
	c.Comm = d.stringOr(prev[5])
	c.Exe = d.stringOr(prev[6])
	c.OldPath = d.stringOr(prev[7])
	c.Target = d.stringOr(prev[8])

	n := d.uvarint()
	if n > uint64(len(d.b))/2 { // every attribute takes at least two bytes
		return d.fail("attribute count exceeds input")
	}
	if n > 0 {
		e.Attrs = make([]Attr, n)
		for i := range e.Attrs {
			e.Attrs[i].Key = d.string()
			e.Attrs[i].Value = d.string()
		}
	}
	if dn := d.uvarint(); dn > 0 {
		if dn > uint64(len(d.b)) {
			return d.fail("data length exceeds input")
		}
		e.Data = append([]byte(nil), d.b[:dn]...)
		d.b = d.b[dn:]
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return d.fail("trailing bytes")
	}
	return nil
}

// decoder reads varints and strings, remembering the first error; once it
// has failed every read returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(msg string) error {
	if d.err == nil {
		d.err = errors.Join(ErrBinary, errors.New(msg))
		d.b = nil
	}
	return d.err
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarintMax(limit uint64) uint64 {
	v := d.uvarint()
	if v > limit {
		d.fail("value out of range")
		return 0
	}
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varintRange(lo, hi int64) int64 {
	v := d.varint()
	if v < lo || v > hi {
		d.fail("value out of range")
		return 0
	}
	return v
}

// prevStrings are the string attributes an Event held before decoding.
type prevStrings [9]string

// stringOr reads a string, returning prev itself when they are equal.
func (d *decoder) stringOr(prev string) string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("string length exceeds input")
		return ""
	}
	b := d.b[:n]
	d.b = d.b[n:]
	if string(b) == prev { // compared without a copy
		return prev
	}
	return string(b)
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("string length exceeds input")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
