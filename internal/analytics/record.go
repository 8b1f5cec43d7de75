package analytics

import (
	"encoding/binary"
	"errors"
	"unsafe"

	"github.com/zeebo/xxh3"

	"github.com/semprop/semprop/event"
)

// ErrRecord is wrapped by every error of the engine's own decoder of the
// journal's binary events (recordView.decode).
var ErrRecord = errors.New("analytics: malformed binary event")

// recordView is what the engine reads of one event in the journal's
// binary form (event.Event.AppendBinary, version 1): the fields its
// aggregates use, decoded without building an event.Event. Its byte
// slices alias the record: they are valid until the source's next read.
//
// decode checks the whole record the way event.Event.UnmarshalBinary
// does (version, presence bits, lengths, ranges, trailing bytes) and
// accepts exactly the records UnmarshalBinary accepts
// (FuzzRecordView checks both ways), so a record the engine counts
// through this path is one every other reader of the journal can
// decode too.
type recordView struct {
	time    int64 // Unix ns; valid when hasTime
	hasTime bool
	typ     []byte
	subject []byte
	comm    []byte
	known   event.Fields
	uid     uint32
	size    int64
	bytes   int64
}

// The readers of the record's varints and length-prefixed strings: each
// returns the rest of the input, and ok false (with a nil rest, so that
// every later read fails too) on malformed input. The one-byte forms,
// most lengths and flags, take the inlined fast path.

func uvarint(b []byte) (uint64, []byte, bool) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), b[1:], true
	}
	return uvarintSlow(b)
}

func uvarintSlow(b []byte) (uint64, []byte, bool) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, false
	}
	return v, b[n:], true
}

func uvarintMax(b []byte, limit uint64) (uint64, []byte, bool) {
	v, b, ok := uvarint(b)
	if v > limit {
		return 0, nil, false
	}
	return v, b, ok
}

func varint(b []byte) (int64, []byte, bool) {
	v, n := binary.Varint(b)
	if n <= 0 {
		return 0, nil, false
	}
	return v, b[n:], true
}

func varintRange(b []byte, lo, hi int64) ([]byte, bool) {
	v, b, ok := varint(b)
	if v < lo || v > hi {
		return nil, false
	}
	return b, ok
}

// str reads a string.
func str(b []byte) (s, rest []byte, ok bool) {
	if len(b) > 0 && b[0] < 0x80 && int(b[0]) < len(b) {
		n := 1 + int(b[0])
		return b[1:n:n], b[n:], true
	}
	return strSlow(b)
}

func strSlow(b []byte) (s, rest []byte, ok bool) {
	n, b, ok := uvarint(b)
	if !ok || n > uint64(len(b)) {
		return nil, nil, false
	}
	return b[:n:n], b[n:], true
}

// Presence bits of the binary header (event/binary.go).
const (
	recTime = 1 << iota
	recHLC
)

// decode reads rec into r. It allocates nothing.
func (r *recordView) decode(rec []byte) error {
	*r = recordView{}
	if len(rec) == 0 || rec[0] != event.BinaryVersion {
		return ErrRecord
	}
	pres, b, ok := uvarint(rec[1:])
	if !ok || pres&^(recTime|recHLC) != 0 || len(b) < 16 {
		return ErrRecord
	}
	b = b[16:]            // the ID
	_, b, ok = uvarint(b) // the seq the event was published with; the journal's counts
	good := ok
	if pres&recTime != 0 {
		r.time, b, ok = varint(b)
		r.hasTime = true
		good = good && ok
	}
	if pres&recHLC != 0 {
		var wall int64
		var logical uint64
		wall, b, ok = varint(b)
		good = good && ok
		logical, b, ok = uvarintMax(b, 1<<32-1)
		good = good && ok
		if good && wall == 0 && logical == 0 {
			return ErrRecord // a zero HLC marked present
		}
	}
	if !good || len(b) < 4 {
		return ErrRecord
	}
	b = b[4:] // priority, boundary, boundaries, flags
	var ok1, ok2, ok3, ok4, ok5 bool
	r.typ, b, ok1 = str(b)
	_, b, ok2 = str(b) // source
	r.subject, b, ok3 = str(b)
	_, b, ok4 = str(b) // source id
	_, b, ok5 = str(b) // data content type
	good = ok1 && ok2 && ok3 && ok4 && ok5
	var known uint64
	known, b, ok = uvarintMax(b, 1<<16-1)
	good = good && ok
	r.known = event.Fields(known)
	k := r.known
	if k&event.HasPID != 0 {
		b, ok = varintRange(b, -1<<31, 1<<31-1)
		good = good && ok
	}
	if k&event.HasTID != 0 {
		b, ok = varintRange(b, -1<<31, 1<<31-1)
		good = good && ok
	}
	if k&event.HasUID != 0 {
		var uid uint64
		uid, b, ok = uvarintMax(b, 1<<32-1)
		r.uid = uint32(uid)
		good = good && ok
	}
	if k&event.HasGID != 0 {
		_, b, ok = uvarintMax(b, 1<<32-1)
		good = good && ok
	}
	if k&event.HasInode != 0 {
		_, b, ok = uvarint(b)
		good = good && ok
	}
	if k&event.HasSize != 0 {
		r.size, b, ok = varint(b)
		good = good && ok
	}
	if k&event.HasBytes != 0 {
		r.bytes, b, ok = varint(b)
		good = good && ok
	}
	if k&event.HasOffset != 0 {
		_, b, ok = varint(b)
		good = good && ok
	}
	if k&event.HasLength != 0 {
		_, b, ok = varint(b)
		good = good && ok
	}
	if k&event.HasMode != 0 {
		_, b, ok = uvarintMax(b, 1<<32-1)
		good = good && ok
	}
	r.comm, b, ok1 = str(b)
	_, b, ok2 = str(b) // exe
	_, b, ok3 = str(b) // old path
	_, b, ok4 = str(b) // target
	good = good && ok1 && ok2 && ok3 && ok4
	var n uint64
	n, b, ok = uvarint(b)
	if !good || !ok || n > uint64(len(b))/2 { // every attribute takes at least two bytes
		return ErrRecord
	}
	for range n {
		_, b, ok1 = str(b)
		_, b, ok2 = str(b)
		if !ok1 || !ok2 {
			return ErrRecord
		}
	}
	n, b, ok = uvarint(b)
	if !ok || n != uint64(len(b)) { // the data, and nothing after it
		return ErrRecord
	}
	return nil
}

// has reports whether every field of f is known (event.Context.Has).
func (r *recordView) has(f event.Fields) bool { return r.known&f == f }

// internCache maps the bytes of a key (a path, a type, a process name)
// to a string the engine already holds, so that a stream of records
// allocates only for keys it has not seen lately. It is a direct-mapped
// table by hash: bounded, and a miss costs one allocation.
type internCache struct {
	slots [internSlots]internSlot
}

const internSlots = 4096

type internSlot struct {
	hash uint64
	s    string
}

// get returns b as a string, and b's xxh3 hash.
func (c *internCache) get(b []byte) (string, uint64) {
	h := xxh3.Hash(b)
	sl := &c.slots[h&(internSlots-1)]
	if sl.hash == h && sl.s == unsafeString(b) {
		return sl.s, h
	}
	s := string(b)
	sl.hash, sl.s = h, s
	return s, h
}

// unsafeString views b as a string for a comparison; the result must not
// be kept.
func unsafeString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
