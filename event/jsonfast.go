package event

import (
	"encoding/binary"
	"time"
	"unsafe"
)

// The fast path of structured-mode decoding. Producers, the Go SDK first,
// write events in one shape: no white space inside the object, keys
// without escapes, each at most once, plain ASCII string values. For
// such an object decodeFast reads each key as a literal run of letters
// and each string value with one 8-byte-at-a-time scan, with the checks of
// the general decoder (decodeObject) folded into that scan. Anything else
// (white space, an escape, a byte outside printable ASCII in a string, a
// repeated key, a field it does not handle, a value decodeObject would
// refuse) makes it give up, and the general decoder reads the object from
// its start: it decides every error, so errors do not depend on the path,
// and what the fast path decodes is what decodeObject decodes (a
// differential fuzz test holds them to that).

// fastFields are the fields decodeFast reads itself; another key sends
// the object to the general decoder.
const fastFields = 1<<fieldSpecversion | 1<<fieldID | 1<<fieldSource | 1<<fieldType |
	1<<fieldSubject | 1<<fieldTime | 1<<fieldDataContentType | 1<<fieldData | 1<<fieldPriority |
	1<<fieldSeq | 1<<fieldHLC | 1<<fieldBoundary | 1<<fieldBoundaries | 1<<fieldRescan |
	1<<fieldPID | 1<<fieldTID | 1<<fieldUID | 1<<fieldGID | 1<<fieldComm | 1<<fieldExe |
	1<<fieldInode | 1<<fieldSize | 1<<fieldBytes | 1<<fieldOffset | 1<<fieldLength |
	1<<fieldMode | 1<<fieldOldPath | 1<<fieldTarget

// Fields of a kind: numbers, and the boolean.
const (
	uintFields = 1<<fieldSeq | 1<<fieldInode | 1<<fieldUID | 1<<fieldGID | 1<<fieldMode
	intFields  = 1<<fieldPID | 1<<fieldTID | 1<<fieldSize | 1<<fieldBytes | 1<<fieldOffset | 1<<fieldLength
)

// decodeAt decodes the object at the scanner's cursor into e, the zero
// Event: by the fast path when the object has the common shape,
// otherwise by decodeObject.
func (e *Event) decodeAt(s *scanner, strict bool) error {
	s.ws()
	if e.decodeFast(s, strict) {
		return nil
	}
	*e = Event{} // what the fast path set before it gave up
	return e.decodeObject(s, strict)
}

// decodeWith is decodeAt when fast is set, otherwise decodeObject.
func (e *Event) decodeWith(s *scanner, strict, fast bool) error {
	if fast {
		return e.decodeAt(s, strict)
	}
	return e.decodeObject(s, strict)
}

// decodeFast decodes the object at s.i into e, the zero Event, and moves
// the cursor past it, when the object has the shape the fast path reads
// and decodeObject would accept it. Otherwise it returns false with the
// cursor where it was (e may be partly set; the arena and the interned
// strings may hold values no event uses: harmless).
func (e *Event) decodeFast(s *scanner, strict bool) bool {
	start := s.i
	if e.fastObject(s, strict) {
		return true
	}
	s.i = start // reading data moved it
	return false
}

// fastObject is decodeFast, leaving the cursor anywhere when it gives up.
func (e *Event) fastObject(s *scanner, strict bool) bool {
	b := s.b
	i := s.i
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i++
	var seen uint32
	for {
		// The key: '"', letters or '_', '"', ':'.
		if i >= len(b) || b[i] != '"' {
			return false
		}
		i++
		k := i
		for i < len(b) && (b[i]-'a' < 26 || b[i] == '_') {
			i++
		}
		if i+1 >= len(b) || b[i] != '"' || b[i+1] != ':' {
			return false
		}
		f := fieldOf(b[k:i])
		i += 2
		if fastFields&(1<<f) == 0 || seen&(1<<f) != 0 {
			return false
		}
		seen |= 1 << f
		switch {
		case uintFields&(1<<f) != 0, intFields&(1<<f) != 0:
			end, ok := e.fastNumber(b, i, f)
			if !ok {
				return false
			}
			i = end
		case f == fieldRescan:
			switch {
			case len(b)-i >= 4 && string(b[i:i+4]) == "true":
				e.Flags |= FlagRescan
				i += 4
			case len(b)-i >= 5 && string(b[i:i+5]) == "false":
				i += 5
			default:
				return false
			}
		case f == fieldData:
			end, ok := fastValue(b, i, 0)
			if !ok {
				return false
			}
			raw := b[i:end]
			i = end
			if string(raw) != "null" {
				e.Data = s.keep(raw) // compact: fastValue took no white space, nor U+2028/9
			} else {
				seen &^= 1 << fieldData // "data": null is no data
			}
		default:
			// A string of printable ASCII other than '"' and '\\'.
			if i >= len(b) || b[i] != '"' {
				return false
			}
			i++
			v := i
			for len(b)-i >= 8 && plain8(binary.LittleEndian.Uint64(b[i:])) {
				i += 8
			}
			for i < len(b) && b[i]-0x20 < 0x60 && b[i] != '"' && b[i] != '\\' {
				i++
			}
			if i >= len(b) || b[i] != '"' {
				return false
			}
			raw := b[v:i]
			i++
			if !e.fastString(s, f, raw) {
				return false
			}
		}
		if i >= len(b) {
			return false
		}
		if b[i] == ',' {
			i++
			continue
		}
		if b[i] != '}' {
			return false
		}
		i++
		break
	}
	// decodeObject's checks at the end of the object; it reports what
	// fails here.
	if seen&(1<<fieldSpecversion) == 0 || e.Type == "" ||
		strict && seen&(1<<fieldID) == 0 || strict && seen&(1<<fieldSource) == 0 {
		return false
	}
	s.i = i
	return true
}

// fastString sets field f of e to the plain string raw (no escapes,
// printable ASCII) as decodeField does, or returns false where
// decodeField would refuse the value.
func (e *Event) fastString(s *scanner, f field, raw []byte) bool {
	var v string // raw, aliased: for values that are parsed, not kept
	if len(raw) > 0 {
		v = unsafe.String(&raw[0], len(raw))
	}
	switch f {
	case fieldSpecversion:
		return v == "1.0"
	case fieldID:
		if len(raw) == 0 {
			return false
		}
		if id, err := ParseID(v); err == nil && len(v) == 26 && !id.IsZero() {
			e.ID = id
		} else {
			e.SourceID = s.keepString(raw)
		}
	case fieldSource:
		if len(raw) == 0 {
			return false
		}
		e.Source = s.internPlain(2, raw)
	case fieldType:
		e.Type = s.internPlain(1, raw)
	case fieldSubject:
		e.Subject = s.keepString(raw)
	case fieldDataContentType:
		e.DataContentType = s.internPlain(3, raw)
	case fieldPriority:
		p, ok := ParsePriority(v)
		if !ok {
			return false
		}
		e.Priority = p
	case fieldTime:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil || t.Year() < 1678 || t.Year() > 2261 {
			return false
		}
		e.Time = t.UTC()
	case fieldHLC:
		h, err := ParseHLC(v)
		if err != nil {
			return false
		}
		e.HLC = h
	case fieldBoundary:
		bd, ok := ParseBoundary(v)
		if !ok {
			return false
		}
		e.Boundary = bd
	case fieldBoundaries:
		bs, ok := ParseBoundaries(v)
		if !ok {
			return false
		}
		e.Boundaries = bs
	case fieldComm:
		e.Context.Comm = s.keepString(raw)
	case fieldExe:
		e.Context.Exe = s.keepString(raw)
	case fieldOldPath:
		e.Context.OldPath = s.keepString(raw)
	case fieldTarget:
		e.Context.Target = s.keepString(raw)
	default:
		return false
	}
	return true
}

// fastNumber reads the JSON integer at b[i:] into the number field f and
// returns where it ends, when it is a plain integer (no fraction, no
// exponent, not a string) within the field's range, as decodeField would
// take it.
func (e *Event) fastNumber(b []byte, i int, f field) (end int, ok bool) {
	neg := i < len(b) && b[i] == '-'
	if neg {
		if uintFields&(1<<f) != 0 {
			return 0, false
		}
		i++
	}
	d := i
	for i < len(b) && b[i]-'0' < 10 {
		i++
	}
	if i == d || i-d > 20 || b[d] == '0' && i-d > 1 {
		return 0, false // no digits, too many, or a leading zero
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, false
	}
	u, ok := parseDigits(b[d:i])
	if !ok {
		return 0, false
	}
	if uintFields&(1<<f) != 0 {
		if u > uintLimit(f) {
			return 0, false
		}
		e.setUint(f, u)
		return i, true
	}
	if u > 1<<63 || !neg && u > 1<<63-1 {
		return 0, false
	}
	v := int64(u)
	if neg {
		v = -v
	}
	if lo, hi := intRange(f); v < lo || v > hi {
		return 0, false
	}
	e.setInt(f, v)
	return i, true
}

// fastMaxDepth bounds the nesting fastValue reads; deeper data goes to
// the general decoder.
const fastMaxDepth = 32

// fastValue returns the end of the JSON value at b[i:] when it is one the
// fast path takes as it is: compact (no white space), strings of printable
// ASCII without escapes, at most fastMaxDepth deep. Such a value is
// valid JSON, and what keepCompact would keep of it is itself.
func fastValue(b []byte, i, depth int) (end int, ok bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '"':
		i++
		for len(b)-i >= 8 && plain8(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && b[i]-0x20 < 0x60 && b[i] != '"' && b[i] != '\\' {
			i++
		}
		if i >= len(b) || b[i] != '"' {
			return 0, false
		}
		return i + 1, true
	case c == '{', c == '[':
		if depth >= fastMaxDepth {
			return 0, false
		}
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		i++
		if i < len(b) && b[i] == closing {
			return i + 1, true
		}
		for {
			if c == '{' {
				if i >= len(b) || b[i] != '"' {
					return 0, false
				}
				if i, ok = fastValue(b, i, depth+1); !ok {
					return 0, false
				}
				if i >= len(b) || b[i] != ':' {
					return 0, false
				}
				i++
			}
			if i, ok = fastValue(b, i, depth+1); !ok {
				return 0, false
			}
			if i >= len(b) {
				return 0, false
			}
			if b[i] == ',' {
				i++
				continue
			}
			if b[i] != closing {
				return 0, false
			}
			return i + 1, true
		}
	case c == 't':
		return fastLiteral(b, i, "true")
	case c == 'f':
		return fastLiteral(b, i, "false")
	case c == 'n':
		return fastLiteral(b, i, "null")
	case c == '-' || c-'0' < 10:
		s := scanner{b: b, i: i}
		if s.number() != nil {
			return 0, false
		}
		return s.i, true
	}
	return 0, false
}

func fastLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}
