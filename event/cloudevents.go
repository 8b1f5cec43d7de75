package event

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MediaType is the CloudEvents structured-mode JSON media type; MediaTypeBatch
// the batch one.
const (
	MediaType      = "application/cloudevents+json"
	MediaTypeBatch = "application/cloudevents-batch+json"
)

// AppendJSON appends e as one CloudEvents 1.0 structured-mode JSON object
// (DESIGN.md, "Event JSON"). Context extensions appear only when known.
// Strings that are not valid UTF-8 are written with U+FFFD in place of the
// bad bytes.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"specversion":"1.0","id":`...)
	if e.SourceID != "" {
		b = appendJSONString(b, e.SourceID)
	} else {
		b = append(b, '"')
		b, _ = e.ID.AppendText(b)
		b = append(b, '"')
	}
	b = append(b, `,"source":`...)
	b = appendJSONString(b, e.Source)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, e.Type)
	if e.Subject != "" {
		b = append(b, `,"subject":`...)
		b = appendJSONString(b, e.Subject)
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
		b = appendJSONString(b, c.Comm)
	}
	if c.Exe != "" {
		b = append(b, `,"exe":`...)
		b = appendJSONString(b, c.Exe)
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
		b = appendJSONString(b, c.OldPath)
	}
	if c.Target != "" {
		b = append(b, `,"target":`...)
		b = appendJSONString(b, c.Target)
	}
	for _, a := range e.Attrs {
		b = append(b, ',')
		b = appendJSONString(b, a.Key)
		b = append(b, ':')
		b = appendJSONString(b, a.Value)
	}
	if e.DataContentType != "" {
		b = append(b, `,"datacontenttype":`...)
		b = appendJSONString(b, e.DataContentType)
	}
	if len(e.Data) > 0 {
		if e.Flags&FlagDataBinary != 0 {
			b = append(b, `,"data_base64":"`...)
			b = base64.StdEncoding.AppendEncode(b, e.Data)
			b = append(b, '"')
		} else {
			b = append(b, `,"data":`...)
			b = append(b, e.Data...)
		}
	}
	return append(b, '}')
}

// MarshalJSON returns the CloudEvents structured form of e.
func (e *Event) MarshalJSON() ([]byte, error) {
	if len(e.Data) > 0 && e.Flags&FlagDataBinary == 0 && !json.Valid(e.Data) {
		return nil, invalid("data", "not a JSON value (set FlagDataBinary for opaque bytes)")
	}
	return e.AppendJSON(make([]byte, 0, 256+len(e.Subject)+len(e.Data))), nil
}

func appendIntField(b []byte, key string, v int64) []byte {
	b = append(b, key...)
	return strconv.AppendInt(b, v, 10)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaping what JSON requires
// and replacing invalid UTF-8 with U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
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
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// UnmarshalJSON decodes one CloudEvents 1.0 structured-mode JSON object into
// e, replacing all its fields. specversion must be "1.0" and type present; a
// missing id or source is left empty for the propagation manager to fill. An
// id that is a ULID becomes ID; any other id is kept as SourceID. Unknown
// extension attributes become Attrs (numbers and booleans as their JSON
// text). Errors are *FieldError naming the field.
func (e *Event) UnmarshalJSON(data []byte) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return &FieldError{Field: "", Err: ErrInvalid, Msg: "malformed JSON: " + err.Error()}
	}
	return e.fromJSONObject(obj)
}

// ParseJSONBatch decodes a CloudEvents batch (a JSON array of structured
// events). Errors name the index and field.
func ParseJSONBatch(data []byte) ([]*Event, error) {
	var arr []map[string]json.RawMessage
	if err := json.Unmarshal(data, &arr); err != nil {
		return nil, &FieldError{Field: "", Err: ErrInvalid, Msg: "malformed JSON batch: " + err.Error()}
	}
	evs := make([]*Event, len(arr))
	for i, obj := range arr {
		evs[i] = new(Event)
		if err := evs[i].fromJSONObject(obj); err != nil {
			if fe, ok := err.(*FieldError); ok {
				fe.Field = "[" + strconv.Itoa(i) + "]." + fe.Field
			}
			return nil, err
		}
	}
	return evs, nil
}

func (e *Event) fromJSONObject(obj map[string]json.RawMessage) error {
	*e = Event{}
	if obj == nil {
		return invalid("", "not a JSON object")
	}
	sv, err := jsonString(obj, "specversion")
	if err != nil {
		return err
	}
	if sv != "1.0" {
		return invalid("specversion", "want \"1.0\", got %q", sv)
	}
	// Keys are processed in sorted order so that errors and Attrs are
	// deterministic.
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var dataB64 string
	hasData, hasB64 := false, false
	for _, k := range keys {
		raw := obj[k]
		var s string
		switch k {
		case "specversion", "dataschema":
			continue
		case "data":
			if !bytes.Equal(raw, []byte("null")) {
				var buf bytes.Buffer
				if err := json.Compact(&buf, raw); err != nil {
					return invalid("data", "%v", err)
				}
				e.Data = buf.Bytes()
				hasData = true
			}
			continue
		case "data_base64":
			if dataB64, err = jsonString(obj, k); err != nil {
				return err
			}
			hasB64 = true
			continue
		case "rescan":
			var v bool
			if err := json.Unmarshal(raw, &v); err != nil {
				return invalid(k, "want a boolean")
			}
			if v {
				e.Flags |= FlagRescan
			}
			continue
		case "seq":
			v, err := jsonUint(raw, k, math.MaxUint64)
			if err != nil {
				return err
			}
			e.Seq = v
			continue
		case "pid", "tid":
			v, err := jsonInt(raw, k, math.MinInt32, math.MaxInt32)
			if err != nil {
				return err
			}
			if k == "pid" {
				e.Context.SetPID(int32(v))
			} else {
				e.Context.SetTID(int32(v))
			}
			continue
		case "uid", "gid", "mode":
			v, err := jsonUint(raw, k, math.MaxUint32)
			if err != nil {
				return err
			}
			switch k {
			case "uid":
				e.Context.SetUID(uint32(v))
			case "gid":
				e.Context.SetGID(uint32(v))
			default:
				e.Context.SetMode(uint32(v))
			}
			continue
		case "inode":
			v, err := jsonUint(raw, k, math.MaxUint64)
			if err != nil {
				return err
			}
			e.Context.SetInode(v)
			continue
		case "size", "bytes", "offset", "length":
			v, err := jsonInt(raw, k, math.MinInt64, math.MaxInt64)
			if err != nil {
				return err
			}
			switch k {
			case "size":
				e.Context.SetSize(v)
			case "bytes":
				e.Context.SetBytes(v)
			case "offset":
				e.Context.Offset = v
				e.Context.Known |= HasOffset
			default:
				e.Context.Length = v
				e.Context.Known |= HasLength
			}
			continue
		}
		// The rest are string-valued.
		if s, err = jsonString(obj, k); err != nil {
			if _, reserved := reservedKeys[k]; reserved || !validAttrKey(k) {
				return err
			}
			// A non-string extension: keep its JSON text.
			var buf bytes.Buffer
			if json.Compact(&buf, raw) != nil {
				return err
			}
			s = buf.String()
		}
		switch k {
		case "id":
			if id, perr := ParseID(s); perr == nil && len(s) == 26 {
				e.ID = id
			} else if s == "" {
				return invalid("id", "must not be empty")
			} else {
				e.SourceID = s
			}
		case "source":
			e.Source = s
		case "type":
			e.Type = s
		case "subject":
			e.Subject = s
		case "time":
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return invalid("time", "want RFC 3339: %v", err)
			}
			if t.Year() < 1678 || t.Year() > 2261 {
				return invalid("time", "year %d out of range", t.Year())
			}
			e.Time = t.UTC()
		case "datacontenttype":
			e.DataContentType = s
		case "hlc":
			h, err := ParseHLC(s)
			if err != nil {
				return invalid("hlc", "%v", err)
			}
			e.HLC = h
		case "priority":
			p, ok := ParsePriority(s)
			if !ok {
				return invalid("priority", "want bulk, normal, high or critical, got %q", s)
			}
			e.Priority = p
		case "boundary":
			bd, ok := ParseBoundary(s)
			if !ok {
				return invalid("boundary", "unknown boundary %q", s)
			}
			e.Boundary = bd
		case "boundaries":
			bs, ok := ParseBoundaries(s)
			if !ok {
				return invalid("boundaries", "unknown boundary in %q", s)
			}
			e.Boundaries = bs
		case "comm":
			e.Context.Comm = s
		case "exe":
			e.Context.Exe = s
		case "oldpath":
			e.Context.OldPath = s
		case "target":
			e.Context.Target = s
		default:
			if !validAttrKey(k) {
				return invalid(k, "extension attribute name must be 1-20 lower-case letters or digits")
			}
			e.Attrs = append(e.Attrs, Attr{Key: k, Value: s})
		}
	}
	if e.Type == "" {
		return invalid("type", "required")
	}
	if hasData && hasB64 {
		return invalid("data_base64", "data and data_base64 are mutually exclusive")
	}
	if hasB64 {
		d, err := base64.StdEncoding.DecodeString(dataB64)
		if err != nil {
			return invalid("data_base64", "%v", err)
		}
		if len(d) > 0 {
			e.Data = d
			e.Flags |= FlagDataBinary
		}
	}
	return nil
}

func jsonString(obj map[string]json.RawMessage, k string) (string, error) {
	raw, ok := obj[k]
	if !ok {
		return "", invalid(k, "required")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", invalid(k, "want a string")
	}
	return s, nil
}

// jsonInt accepts a JSON integer or a string holding one (binary-mode
// headers carry every extension as a string).
func jsonInt(raw json.RawMessage, k string, lo, hi int64) (int64, error) {
	txt := strings.Trim(string(raw), `"`)
	v, err := strconv.ParseInt(txt, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, invalid(k, "want an integer in [%d, %d]", lo, hi)
	}
	return v, nil
}

func jsonUint(raw json.RawMessage, k string, hi uint64) (uint64, error) {
	txt := strings.Trim(string(raw), `"`)
	v, err := strconv.ParseUint(txt, 10, 64)
	if err != nil || v > hi {
		return 0, invalid(k, "want an unsigned integer up to %d", hi)
	}
	return v, nil
}

// String returns a short human-readable form, for logs and errors.
func (e *Event) String() string {
	return fmt.Sprintf("%s seq=%d %s %s", e.ID, e.Seq, e.Type, e.Subject)
}
