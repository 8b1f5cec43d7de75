package event

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
)

// MediaType is the CloudEvents structured-mode JSON media type; MediaTypeBatch
// the batch one.
const (
	MediaType      = "application/cloudevents+json"
	MediaTypeBatch = "application/cloudevents-batch+json"
)

// AppendJSON appends e as one CloudEvents 1.0 structured-mode JSON object.
// Context extensions appear only when known.
//
// The object is always valid JSON on a single line: it holds no raw line
// feed, carriage return, U+2028 or U+2029, whatever e holds, so that NDJSON
// and Server-Sent Events framing never breaks. JSON Data is written compact
// (and with U+2028/U+2029 escaped); Data that is not one valid JSON value
// although FlagDataBinary is clear (never accepted at ingress, but an old
// journal may hold it) is written as data_base64. Strings that are not valid
// UTF-8 are written with U+FFFD in place of the bad bytes; the decoders and
// Validate refuse such strings, so only events built in process can have
// them.
func (e *Event) AppendJSON(b []byte) []byte {
	var raw []byte
	if len(e.Data) > 0 && e.Flags&FlagDataBinary == 0 {
		raw, _ = scanJSON(e.Data) // nil when not JSON
	}
	var bad bool
	return e.appendJSON(b, raw, &bad)
}

// AppendJSONChecked appends e as MarshalJSON encodes it, with its checks:
// it refuses (with a *FieldError, b returned unchanged) what AppendJSON
// would have to change. Encoding many events into one buffer with it
// spares MarshalJSON's allocation per event; it does not allocate when b
// has room. JSON Data is scanned once, for the check and the encoding.
//
// The strings are checked as they are written (checkText names the field
// only when one is found wanting): each is read once.
func (e *Event) AppendJSONChecked(b []byte) ([]byte, error) {
	var raw []byte
	if len(e.Data) > 0 && e.Flags&FlagDataBinary == 0 {
		var err error
		if raw, err = scanJSON(e.Data); err != nil {
			_, err = e.checkText() // the first refusal, as MarshalJSON reports it
			return b, err
		}
	}
	var bad bool
	out := e.appendJSON(b, raw, &bad)
	if bad {
		if _, err := e.checkText(); err != nil {
			return b, err
		}
	}
	return out, nil
}

// appendJSON is AppendJSON with e.Data's JSON value already scanned: raw
// is its text (scanJSON), or nil when Data is binary or not JSON. It sets
// *bad when a string it wrote was not valid UTF-8 (and had U+FFFD written
// in place of the bad bytes).
func (e *Event) appendJSON(b []byte, raw []byte, bad *bool) []byte {
	b = append(b, `{"specversion":"1.0","id":`...)
	if e.SourceID != "" {
		b = appendJSONStr(b, e.SourceID, bad)
	} else {
		b = append(b, '"')
		b, _ = e.ID.AppendText(b)
		b = append(b, '"')
	}
	b = append(b, `,"source":`...)
	b = appendJSONStr(b, e.Source, bad)
	b = append(b, `,"type":`...)
	b = appendJSONStr(b, e.Type, bad)
	if e.Subject != "" {
		b = append(b, `,"subject":`...)
		b = appendJSONStr(b, e.Subject, bad)
	}
	if !e.Time.IsZero() {
		b = append(b, `,"time":"`...)
		b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	if e.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, e.Seq, 10)
	}
	if e.Boundary != BoundaryNone {
		b = append(b, `,"boundary":"`...)
		b = append(b, e.Boundary.String()...)
		b = append(b, '"')
	}
	if e.Boundaries != 0 {
		b = append(b, `,"boundaries":"`...)
		b = append(b, e.Boundaries.String()...)
		b = append(b, '"')
	}
	b = append(b, `,"priority":"`...)
	b = append(b, e.Priority.String()...)
	b = append(b, '"')
	if !e.HLC.IsZero() {
		b = append(b, `,"hlc":"`...)
		b, _ = e.HLC.AppendText(b)
		b = append(b, '"')
	}
	if e.Flags&FlagRescan != 0 {
		b = append(b, `,"rescan":true`...)
	}
	c := &e.Context
	if c.Known&HasPID != 0 {
		b = appendIntField(b, `,"pid":`, int64(c.PID))
	}
	if c.Known&HasTID != 0 {
		b = appendIntField(b, `,"tid":`, int64(c.TID))
	}
	if c.Known&HasUID != 0 {
		b = appendIntField(b, `,"uid":`, int64(c.UID))
	}
	if c.Known&HasGID != 0 {
		b = appendIntField(b, `,"gid":`, int64(c.GID))
	}
	if c.Comm != "" {
		b = append(b, `,"comm":`...)
		b = appendJSONStr(b, c.Comm, bad)
	}
	if c.Exe != "" {
		b = append(b, `,"exe":`...)
		b = appendJSONStr(b, c.Exe, bad)
	}
	if c.Known&HasInode != 0 {
		b = append(b, `,"inode":`...)
		b = strconv.AppendUint(b, c.Inode, 10)
	}
	if c.Known&HasSize != 0 {
		b = appendIntField(b, `,"size":`, c.Size)
	}
	if c.Known&HasBytes != 0 {
		b = appendIntField(b, `,"bytes":`, c.Bytes)
	}
	if c.Known&HasOffset != 0 {
		b = appendIntField(b, `,"offset":`, c.Offset)
	}
	if c.Known&HasLength != 0 {
		b = appendIntField(b, `,"length":`, c.Length)
	}
	if c.Known&HasMode != 0 {
		b = appendIntField(b, `,"mode":`, int64(c.Mode))
	}
	if c.OldPath != "" {
		b = append(b, `,"oldpath":`...)
		b = appendJSONStr(b, c.OldPath, bad)
	}
	if c.Target != "" {
		b = append(b, `,"target":`...)
		b = appendJSONStr(b, c.Target, bad)
	}
	for _, a := range e.Attrs {
		b = append(b, ',')
		b = appendJSONStr(b, a.Key, bad)
		b = append(b, ':')
		b = appendJSONStr(b, a.Value, bad)
	}
	if e.DataContentType != "" {
		b = append(b, `,"datacontenttype":`...)
		b = appendJSONStr(b, e.DataContentType, bad)
	}
	if len(e.Data) > 0 {
		switch {
		case raw == nil:
			b = append(b, `,"data_base64":"`...)
			b = base64.StdEncoding.AppendEncode(b, e.Data)
			b = append(b, '"')
		case isCompact(raw):
			b = append(b, `,"data":`...)
			b = append(b, raw...)
		default:
			b = append(b, `,"data":`...)
			b = appendCompact(b, raw)
		}
	}
	return append(b, '}')
}

// MarshalJSON returns the CloudEvents structured form of e (AppendJSON).
// Unlike AppendJSON it refuses what it would otherwise have to change:
// Data that is not one JSON value of valid Unicode text although
// FlagDataBinary is clear, and strings that are not valid UTF-8; the
// error is a *FieldError naming the field.
func (e *Event) MarshalJSON() ([]byte, error) {
	b, err := e.AppendJSONChecked(make([]byte, 0, 256+len(e.Subject)+len(e.Data)))
	if err != nil {
		return nil, err
	}
	return b, nil
}

// checkText checks that e's strings are valid UTF-8 and that its JSON data
// is one JSON value of valid Unicode text, and returns that value's text
// (nil without JSON data).
func (e *Event) checkText() ([]byte, error) {
	for _, f := range [...]struct{ name, v string }{
		{"id", e.SourceID}, {"source", e.Source}, {"type", e.Type}, {"subject", e.Subject},
		{"datacontenttype", e.DataContentType}, {"comm", e.Context.Comm},
		{"exe", e.Context.Exe}, {"oldpath", e.Context.OldPath}, {"target", e.Context.Target},
	} {
		if !utf8.ValidString(f.v) {
			return nil, invalid(f.name, "not valid UTF-8")
		}
	}
	for _, a := range e.Attrs {
		if !utf8.ValidString(a.Key) {
			return nil, invalid("attrs", "extension attribute name is not valid UTF-8")
		}
		if !utf8.ValidString(a.Value) {
			return nil, invalid(a.Key, "not valid UTF-8")
		}
	}
	if len(e.Data) > 0 && e.Flags&FlagDataBinary == 0 {
		raw, err := scanJSON(e.Data)
		if err != nil {
			return nil, invalid("data", "not one JSON value (set FlagDataBinary for opaque bytes): %s", fieldMsg(err))
		}
		return raw, nil
	}
	return nil, nil
}

// fieldMsg is the message of a *FieldError, or the error's text.
func fieldMsg(err error) string {
	if fe, ok := err.(*FieldError); ok {
		return fe.Msg
	}
	return err.Error()
}

func appendIntField(b []byte, key string, v int64) []byte {
	b = append(b, key...)
	return strconv.AppendInt(b, v, 10)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaping what JSON requires
// and U+2028/U+2029, and replacing invalid UTF-8 with U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	var bad bool
	return appendJSONStr(b, s, &bad)
}

// appendJSONStr is appendJSONString setting *bad when s is not valid
// UTF-8 (exactly when utf8.ValidString(s) is false).
func appendJSONStr(b []byte, s string, bad *bool) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		for len(s)-i >= 8 && plain8(load8(s[i:])) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			*bad = true
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
			i++
			start = i
			continue
		case r == '\u2028' || r == '\u2029':
			// Valid JSON raw, but line terminators to JavaScript and to
			// some line readers.
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// UnmarshalJSON decodes one CloudEvents 1.0 structured-mode JSON object into
// e, replacing all its fields. As CloudEvents 1.0 requires, specversion must
// be "1.0" and id, source and type present and not empty (ParseDraft
// accepts an event without id and source). An id that is a ULID becomes ID;
// any other id is kept as SourceID. Unknown extension attributes become
// Attrs in document order (numbers, booleans and other non-strings as their
// compact JSON text); a repeated key keeps its last value.
//
// The input must be valid JSON of valid Unicode text: invalid UTF-8 and \u
// escapes of lone surrogates are refused, never replaced. Data is kept
// compact (insignificant whitespace removed, U+2028/U+2029 escaped). Errors
// are *FieldError naming the field.
func (e *Event) UnmarshalJSON(data []byte) error {
	return e.unmarshal(data, true)
}

// ParseDraft decodes one structured-mode object as UnmarshalJSON does,
// except that id and source may be missing. It reads events that a
// producer's tools complete (Complete) before they send them; what comes
// from the network is decoded with UnmarshalJSON.
func ParseDraft(data []byte) (*Event, error) {
	e := new(Event)
	if err := e.unmarshal(data, false); err != nil {
		return nil, err
	}
	return e, nil
}

// Complete gives e what CloudEvents requires and a producer may leave to
// its tools: a new ID when e has neither ID nor SourceID, and source when
// e.Source is empty.
func (e *Event) Complete(source string) {
	if e.ID.IsZero() && e.SourceID == "" {
		e.ID = NewID()
	}
	if e.Source == "" {
		e.Source = source
	}
}

func (e *Event) unmarshal(data []byte, strict bool) error {
	return e.unmarshalWith(data, strict, true)
}

// unmarshalWith is unmarshal decoding the object with decodeAt (fast) or
// decodeObject alone (tests compare the two).
func (e *Event) unmarshalWith(data []byte, strict, fast bool) error {
	s := scanner{b: data}
	*e = Event{}
	if err := e.decodeWith(&s, strict, fast); err != nil {
		return err
	}
	if !s.atEnd() {
		return s.errorf("trailing data after the object")
	}
	return nil
}

// ParseJSONBatch decodes a CloudEvents batch (a JSON array of structured
// events, each as UnmarshalJSON requires). Errors name the index and field.
//
// The events of one batch share memory: they are allocated a run at a
// time, and their strings and data are copied (never aliasing data) into
// chunks shared by the batch, so that decoding allocates a few objects per
// batch rather than several per event.
func ParseJSONBatch(data []byte) ([]*Event, error) {
	return parseJSONBatch(data, true)
}

// parseJSONBatch is ParseJSONBatch decoding each object with decodeAt
// (fast) or decodeObject alone (tests compare the two).
func parseJSONBatch(data []byte, fast bool) ([]*Event, error) {
	s := scanner{b: data, interned: make(map[string]string, 4), batch: true}
	if err := s.expect('['); err != nil {
		return nil, err
	}
	var evs []*Event
	var slab []Event // events are allocated a run at a time
	if s.peek() == ']' {
		s.i++
	} else {
		for {
			if len(slab) == 0 {
				slab = make([]Event, min(max(len(evs), 1), 64))
			}
			ev := &slab[0]
			slab = slab[1:]
			at := s.i
			if err := ev.decodeWith(&s, true, fast); err != nil { // ev is zero: a new slab's
				if fe, ok := err.(*FieldError); ok && fe.Field != "" {
					fe.Field = "[" + strconv.Itoa(len(evs)) + "]." + fe.Field
				}
				return nil, err
			}
			if evs == nil {
				// Room for as many events as there are bytes left for
				// ones of the first one's size (bounded: a tiny first
				// event must not reserve a huge slice).
				n := (len(data)-at)/max(s.i-at+1, 1) + 1
				evs = make([]*Event, 0, min(n, 1<<16))
			}
			evs = append(evs, ev)
			if s.peek() == ',' {
				s.i++
				continue
			}
			if err := s.expect(']'); err != nil {
				return nil, err
			}
			break
		}
	}
	if !s.atEnd() {
		return nil, s.errorf("trailing data after the batch")
	}
	return evs, nil
}

// decodeObject reads one event object at the scanner's cursor into e,
// which must be the zero Event; strict requires id and source.
func (e *Event) decodeObject(s *scanner, strict bool) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	var specversion, dataB64 string
	hasSV, hasData, hasB64, hasID, hasSource := false, false, false, false, false
	if s.peek() == '}' {
		s.i++
	} else {
		for {
			rawKey, plain, err := s.rawString()
			if err != nil {
				return err
			}
			key := rawKey
			if !plain {
				k, err := unquote(rawKey)
				if err != nil {
					return s.errorf("bad escape in key")
				}
				key = []byte(k)
			}
			if err := s.expect(':'); err != nil {
				return err
			}
			f := fieldOf(key)
			switch f {
			case fieldID:
				hasID = true
			case fieldSource:
				hasSource = true
			}
			if err := e.decodeField(s, f, key, &specversion, &dataB64, &hasSV, &hasData, &hasB64); err != nil {
				if fe, ok := err.(*FieldError); ok && fe.Field == "" && validKeyText(key) {
					fe.Field = string(key) // a syntax error inside the field's value
				}
				return err
			}
			if s.peek() == ',' {
				s.i++
				continue
			}
			if err := s.expect('}'); err != nil {
				return err
			}
			break
		}
	}
	if !hasSV {
		return invalid("specversion", "required by CloudEvents 1.0")
	}
	if specversion != "1.0" {
		return invalid("specversion", "want \"1.0\", got %q", specversion)
	}
	if e.Type == "" {
		return invalid("type", "required by CloudEvents 1.0")
	}
	if strict && !hasID {
		return invalid("id", "required by CloudEvents 1.0")
	}
	if strict && !hasSource {
		return invalid("source", "required by CloudEvents 1.0")
	}
	if hasData && hasB64 {
		return invalid("data_base64", "data and data_base64 are mutually exclusive")
	}
	if hasB64 {
		d, err := base64.StdEncoding.DecodeString(dataB64)
		if err != nil {
			return invalid("data_base64", "%v", err)
		}
		e.Data, e.Flags = nil, e.Flags&^FlagDataBinary
		if len(d) > 0 {
			e.Data = d
			e.Flags |= FlagDataBinary
		}
	}
	return nil
}

// field names a key of the structured form; fieldExt is any other key (a
// free extension attribute).
type field uint8

const (
	fieldExt field = iota
	fieldSpecversion
	fieldID
	fieldSource
	fieldType
	fieldSubject
	fieldTime
	fieldDataContentType
	fieldData
	fieldDataBase64
	fieldSeq
	fieldHLC
	fieldPriority
	fieldBoundary
	fieldBoundaries
	fieldRescan
	fieldPID
	fieldTID
	fieldUID
	fieldGID
	fieldComm
	fieldExe
	fieldInode
	fieldSize
	fieldBytes
	fieldOffset
	fieldLength
	fieldMode
	fieldOldPath
	fieldTarget
)

// fieldOf returns the field key names: one string switch per key, the
// rest of decoding switches on the number. The keys are those of
// reservedKeys.
func fieldOf(key []byte) field {
	switch string(key) { // no allocation: the compiler compares in place
	case "specversion":
		return fieldSpecversion
	case "id":
		return fieldID
	case "source":
		return fieldSource
	case "type":
		return fieldType
	case "subject":
		return fieldSubject
	case "time":
		return fieldTime
	case "datacontenttype":
		return fieldDataContentType
	case "data":
		return fieldData
	case "data_base64":
		return fieldDataBase64
	case "seq":
		return fieldSeq
	case "hlc":
		return fieldHLC
	case "priority":
		return fieldPriority
	case "boundary":
		return fieldBoundary
	case "boundaries":
		return fieldBoundaries
	case "rescan":
		return fieldRescan
	case "pid":
		return fieldPID
	case "tid":
		return fieldTID
	case "uid":
		return fieldUID
	case "gid":
		return fieldGID
	case "comm":
		return fieldComm
	case "exe":
		return fieldExe
	case "inode":
		return fieldInode
	case "size":
		return fieldSize
	case "bytes":
		return fieldBytes
	case "offset":
		return fieldOffset
	case "length":
		return fieldLength
	case "mode":
		return fieldMode
	case "oldpath":
		return fieldOldPath
	case "target":
		return fieldTarget
	}
	return fieldExt
}

func (e *Event) decodeField(s *scanner, f field, key []byte, specversion, dataB64 *string, hasSV, hasData, hasB64 *bool) error {
	c := &e.Context
	switch f {
	case fieldData:
		raw, err := s.value()
		if err != nil {
			return err
		}
		e.Data, *hasData = nil, false
		if string(raw) != "null" {
			e.Data, *hasData = s.keepCompact(raw), true
		}
		return nil
	case fieldRescan:
		raw, err := s.value()
		if err != nil {
			return err
		}
		switch string(raw) {
		case "true":
			e.Flags |= FlagRescan
		case "false":
			e.Flags &^= FlagRescan
		default:
			return invalid("rescan", "want a boolean")
		}
		return nil
	case fieldSeq, fieldInode, fieldUID, fieldGID, fieldMode:
		v, err := s.uintValue(key, uintLimit(f))
		if err != nil {
			return err
		}
		e.setUint(f, v)
		return nil
	case fieldPID, fieldTID, fieldSize, fieldBytes, fieldOffset, fieldLength:
		lo, hi := intRange(f)
		v, err := s.intValue(key, lo, hi)
		if err != nil {
			return err
		}
		e.setInt(f, v)
		return nil
	}
	// The rest are string-valued; free extensions may be any JSON value.
	var v string
	if s.peek() == '"' {
		var err error
		switch f {
		case fieldSpecversion:
			v, err = s.strInterned(0)
		case fieldType:
			v, err = s.strInterned(1)
		case fieldSource:
			v, err = s.strInterned(2)
		case fieldDataContentType:
			v, err = s.strInterned(3)
		case fieldID, fieldTime, fieldHLC, fieldPriority, fieldBoundary, fieldBoundaries, fieldDataBase64:
			// Parsed, not kept (an id that is not a ULID is kept below).
			v, err = s.view()
		default:
			v, err = s.str()
		}
		if err != nil {
			if fe, ok := err.(*FieldError); ok {
				return fe
			}
			return invalid(string(key), "%v", err)
		}
	} else {
		if f != fieldExt || !validAttrKey(string(key)) {
			if _, err := s.value(); err != nil {
				return err
			}
			return invalid(string(key), "want a string")
		}
		raw, err := s.value()
		if err != nil {
			return err
		}
		v = s.keepCompactString(raw)
	}
	switch f {
	case fieldSpecversion:
		*specversion, *hasSV = v, true
	case fieldDataBase64:
		*dataB64, *hasB64 = v, true
	case fieldID:
		if v == "" {
			return invalid("id", "must not be empty")
		}
		e.ID, e.SourceID = ID{}, ""
		if id, err := ParseID(v); err == nil && len(v) == 26 && !id.IsZero() { // a zero ULID would read as "no id"
			e.ID = id
		} else {
			e.SourceID = s.keepString(unsafe.Slice(unsafe.StringData(v), len(v))) // v may alias the input
		}
	case fieldSource:
		if v == "" {
			return invalid("source", "must not be empty")
		}
		e.Source = v
	case fieldType:
		e.Type = v
	case fieldSubject:
		e.Subject = v
	case fieldTime:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return invalid("time", "want RFC 3339: %v", err)
		}
		if t.Year() < 1678 || t.Year() > 2261 {
			return invalid("time", "year %d out of range", t.Year())
		}
		e.Time = t.UTC()
	case fieldDataContentType:
		e.DataContentType = v
	case fieldHLC:
		h, err := ParseHLC(v)
		if err != nil {
			return invalid("hlc", "%v", err)
		}
		e.HLC = h
	case fieldPriority:
		p, ok := ParsePriority(v)
		if !ok {
			return invalid("priority", "want bulk, normal, high or critical, got %q", v)
		}
		e.Priority = p
	case fieldBoundary:
		bd, ok := ParseBoundary(v)
		if !ok {
			return invalid("boundary", "unknown boundary %q", v)
		}
		e.Boundary = bd
	case fieldBoundaries:
		bs, ok := ParseBoundaries(v)
		if !ok {
			return invalid("boundaries", "unknown boundary in %q", v)
		}
		e.Boundaries = bs
	case fieldComm:
		c.Comm = v
	case fieldExe:
		c.Exe = v
	case fieldOldPath:
		c.OldPath = v
	case fieldTarget:
		c.Target = v
	default:
		if !validAttrKey(string(key)) {
			k := string(key)
			return invalid(k, "extension attribute name must be 1-20 lower-case letters or digits")
		}
		e.SetAttr(s.keepString(key), v)
	}
	return nil
}

// uintLimit is the largest value of the unsigned field f (seq, inode,
// uid, gid, mode).
func uintLimit(f field) uint64 {
	if f == fieldSeq || f == fieldInode {
		return math.MaxUint64
	}
	return math.MaxUint32
}

// intRange is the range of the signed field f (pid, tid, size, bytes,
// offset, length).
func intRange(f field) (lo, hi int64) {
	if f == fieldPID || f == fieldTID {
		return math.MinInt32, math.MaxInt32
	}
	return math.MinInt64, math.MaxInt64
}

// setUint sets the unsigned field f (seq, inode, uid, gid, mode) to v,
// which is within uintLimit(f).
func (e *Event) setUint(f field, v uint64) {
	c := &e.Context
	switch f {
	case fieldSeq:
		e.Seq = v
	case fieldInode:
		c.SetInode(v)
	case fieldUID:
		c.SetUID(uint32(v))
	case fieldGID:
		c.SetGID(uint32(v))
	default:
		c.SetMode(uint32(v))
	}
}

// setInt sets the signed field f (pid, tid, size, bytes, offset, length)
// to v, which is within intRange(f).
func (e *Event) setInt(f field, v int64) {
	c := &e.Context
	switch f {
	case fieldPID:
		c.SetPID(int32(v))
	case fieldTID:
		c.SetTID(int32(v))
	case fieldSize:
		c.SetSize(v)
	case fieldBytes:
		c.SetBytes(v)
	case fieldOffset:
		c.Offset = v
		c.Known |= HasOffset
	default:
		c.Length = v
		c.Known |= HasLength
	}
}

// intValue reads a JSON integer, or a string holding one (binary-mode
// headers carry every extension as a string).
func (s *scanner) intValue(k []byte, lo, hi int64) (int64, error) {
	txt, err := s.numberText()
	if err != nil {
		return 0, err
	}
	neg := len(txt) > 0 && txt[0] == '-'
	if neg {
		txt = txt[1:]
	}
	u, ok := parseDigits(txt)
	// Magnitudes up to 2^63 fit an int64 when negative, 2^63-1 otherwise.
	if !ok || u > 1<<63 || (!neg && u > 1<<63-1) {
		return 0, invalid(string(k), "want an integer in [%d, %d]", lo, hi)
	}
	v := int64(u)
	if neg {
		v = -v
	}
	if v < lo || v > hi {
		return 0, invalid(string(k), "want an integer in [%d, %d]", lo, hi)
	}
	return v, nil
}

func (s *scanner) uintValue(k []byte, hi uint64) (uint64, error) {
	txt, err := s.numberText()
	if err != nil {
		return 0, err
	}
	v, ok := parseDigits(txt)
	if !ok || v > hi {
		return 0, invalid(string(k), "want an unsigned integer up to %d", hi)
	}
	return v, nil
}

// parseDigits parses a non-empty run of decimal digits without overflow.
func parseDigits(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// numberText returns the text of a JSON number, or of a JSON string (for
// numbers carried as strings).
func (s *scanner) numberText() ([]byte, error) {
	if s.peek() == '"' {
		raw, plain, err := s.rawString()
		if err != nil {
			return nil, err
		}
		if !plain {
			v, err := unquote(raw)
			return []byte(v), err
		}
		return raw, nil
	}
	return s.value()
}

// String returns a short human-readable form, for logs and errors.
func (e *Event) String() string {
	return fmt.Sprintf("%s seq=%d %s %s", e.ID, e.Seq, e.Type, e.Subject)
}
