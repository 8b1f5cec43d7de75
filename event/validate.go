package event

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Errors returned by validation and the codecs. A *FieldError wraps one of
// them and names the field at fault.
var (
	ErrInvalid  = errors.New("invalid")
	ErrTooLarge = errors.New("too large")
	// ErrReserved marks a field only semprop itself may set (see
	// CheckNetworkOrigin).
	ErrReserved = errors.New("reserved")
)

// FieldError reports a problem with one field of an event.
type FieldError struct {
	Field string // the wire name of the field ("type", "data", "pid", …)
	Err   error  // ErrInvalid or ErrTooLarge, possibly wrapped
	Msg   string
}

func (e *FieldError) Error() string {
	return "event: field " + e.Field + ": " + e.Msg
}

func (e *FieldError) Unwrap() error { return e.Err }

func invalid(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Err: ErrInvalid, Msg: fmt.Sprintf(format, args...)}
}

func reserved(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Err: ErrReserved, Msg: fmt.Sprintf(format, args...)}
}

func tooLarge(field string, n, limit int) *FieldError {
	return &FieldError{Field: field, Err: ErrTooLarge, Msg: fmt.Sprintf("%d bytes exceeds the limit of %d", n, limit)}
}

// Limits bound the size of an event's parts.
type Limits struct {
	MaxData   int // payload bytes; DefaultLimits: 1 MiB
	MaxString int // type, source, subject, paths, attribute values
	MaxAttrs  int // number of extension attributes
}

// DefaultLimits are the limits applied at ingress when none are configured.
var DefaultLimits = Limits{MaxData: 1 << 20, MaxString: 4096, MaxAttrs: 64}

// ValidType reports whether t is a well-formed event type: one or more
// tokens separated by ".", each a non-empty run of printable characters
// other than ".", "*" and ">" (the pattern wildcards): letters of either
// case, digits, punctuation such as "_-:/+", and other Unicode letters,
// as CloudEvents producers write types ("com.example.Object.Created").
// White space, control characters, line and paragraph separators and
// invalid UTF-8 are refused, so a type is safe on a line of framing (an
// SSE "event:" field) and in a token pattern. Types are case-sensitive:
// "FS.write" is an application type, not the reserved "fs.write". It does
// not allocate.
func ValidType(t string) bool {
	if t == "" {
		return false
	}
	tok := 0
	for i := 0; i < len(t); {
		c := t[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c == '.':
				if tok == 0 {
					return false
				}
				tok = 0
			case c <= ' ' || c == 0x7f || c == '*' || c == '>':
				return false
			default:
				tok++
			}
			continue
		}
		r, n := utf8.DecodeRuneInString(t[i:])
		if r == utf8.RuneError || !unicode.IsGraphic(r) || unicode.IsSpace(r) {
			return false
		}
		i += n
		tok++
	}
	return tok > 0
}

// validAttrKey reports whether k is a CloudEvents extension name:
// lower-case letters and digits, 1 to 20 characters.
func validAttrKey(k string) bool {
	if k == "" || len(k) > 20 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// Validate checks e against lim (DefaultLimits where a limit is zero) and
// returns a *FieldError naming the first bad field. It checks what a producer
// controls: type syntax, sizes, attribute names, that strings are valid
// UTF-8 and that JSON data is one JSON value of valid Unicode text; ID,
// Source and Time may be unset (the propagation manager fills them for
// events published in process; the CloudEvents decoders require id and
// source on the wire).
func (e *Event) Validate(lim Limits) error { return e.validate(lim, true) }

// ValidateDecoded is Validate for an event as UnmarshalJSON,
// ParseJSONBatch or ParseBinaryMode returned it: those decoders have
// already checked that its strings are valid UTF-8 and that its data is
// one JSON value of valid text (their fuzz tests hold them to it), so
// only the limits and the grammar of type and attribute names are
// checked here — the text is not scanned a second time. An event changed
// after decoding must be checked with Validate.
func (e *Event) ValidateDecoded(lim Limits) error { return e.validate(lim, false) }

func (e *Event) validate(lim Limits, text bool) error {
	if lim.MaxData <= 0 {
		lim.MaxData = DefaultLimits.MaxData
	}
	if lim.MaxString <= 0 {
		lim.MaxString = DefaultLimits.MaxString
	}
	if lim.MaxAttrs <= 0 {
		lim.MaxAttrs = DefaultLimits.MaxAttrs
	}
	if e.Type == "" {
		return invalid("type", "required")
	}
	if len(e.Type) > 255 {
		return tooLarge("type", len(e.Type), 255)
	}
	if !ValidType(e.Type) {
		return invalid("type", "%q is not dotted tokens of printable characters other than *, > and white space", e.Type)
	}
	for _, f := range [...]struct{ name, v string }{
		{"id", e.SourceID}, {"source", e.Source}, {"subject", e.Subject},
		{"datacontenttype", e.DataContentType}, {"comm", e.Context.Comm},
		{"exe", e.Context.Exe}, {"oldpath", e.Context.OldPath}, {"target", e.Context.Target},
	} {
		if len(f.v) > lim.MaxString {
			return tooLarge(f.name, len(f.v), lim.MaxString)
		}
		if text && !utf8.ValidString(f.v) {
			return invalid(f.name, "not valid UTF-8")
		}
	}
	if len(e.Data) > lim.MaxData {
		return tooLarge("data", len(e.Data), lim.MaxData)
	}
	if text && len(e.Data) > 0 && e.Flags&FlagDataBinary == 0 {
		if _, err := scanJSON(e.Data); err != nil {
			return invalid("data", "not one JSON value (opaque bytes need FlagDataBinary): %s", fieldMsg(err))
		}
	}
	if e.Priority < PriorityBulk || e.Priority > PriorityCritical {
		return invalid("priority", "unknown priority %d", e.Priority)
	}
	if e.Boundary >= boundaryCount {
		return invalid("boundary", "unknown boundary %d", e.Boundary)
	}
	if len(e.Attrs) > lim.MaxAttrs {
		return &FieldError{Field: "attrs", Err: ErrTooLarge, Msg: fmt.Sprintf("%d extension attributes exceed the limit of %d", len(e.Attrs), lim.MaxAttrs)}
	}
	for i, a := range e.Attrs {
		if !validAttrKey(a.Key) {
			return invalid(a.Key, "extension attribute name must be 1-20 lower-case letters or digits")
		}
		if _, ok := reservedKeys[a.Key]; ok {
			return invalid(a.Key, "reserved attribute name used as an extension")
		}
		for _, b := range e.Attrs[:i] {
			if b.Key == a.Key {
				return invalid(a.Key, "duplicate extension attribute")
			}
		}
		if len(a.Value) > lim.MaxString {
			return tooLarge(a.Key, len(a.Value), lim.MaxString)
		}
		if text && !utf8.ValidString(a.Value) {
			return invalid(a.Key, "not valid UTF-8")
		}
	}
	return nil
}

// reservedKeys are the CloudEvents attributes and semprop extensions with a
// field of their own; they cannot be used as free extension attributes.
var reservedKeys = map[string]struct{}{
	"specversion": {}, "id": {}, "source": {}, "type": {}, "subject": {}, "time": {},
	"datacontenttype": {}, "data": {}, "data_base64": {},
	"seq": {}, "hlc": {}, "priority": {}, "boundary": {}, "boundaries": {}, "rescan": {},
	"pid": {}, "tid": {}, "uid": {}, "gid": {}, "comm": {}, "exe": {}, "inode": {},
	"size": {}, "bytes": {}, "offset": {}, "length": {}, "mode": {}, "oldpath": {}, "target": {},
}
