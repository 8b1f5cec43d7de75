package event

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// scanner is a small JSON reader specialised for CloudEvents objects: it
// walks the input once, compares keys without allocating, parses numbers in
// place and hands back raw slices for nested values. It exists because
// decoding through map[string]json.RawMessage cost ~20 µs per event.
type scanner struct {
	b []byte
	i int
	// interned holds the values of attributes that repeat across the
	// events of a batch (specversion, type, source, datacontenttype), so
	// that each distinct value is allocated once per batch; nil outside
	// batches.
	interned map[string]string
	// last holds the last value of each interned attribute (internIndex):
	// in a batch the next event's is usually the same, found without
	// hashing.
	last [4]string

	// arena, in a batch, is the chunk the events' strings and data are
	// copied into (keep), so that a batch allocates a few chunks instead
	// of two or three objects per event. What is kept there is never
	// written again. nil outside batches: each kept value is allocated.
	arena []byte
	batch bool
	// tmp is scratch space for unquoting.
	tmp []byte
}

// maxInterned bounds scanner.interned.
const maxInterned = 64

// Arena chunks: at most arenaChunk bytes, and no more than the input left
// to decode (which bounds what is still to keep); a value larger than
// arenaOwn gets an allocation of its own.
const (
	arenaChunk    = 32 << 10
	arenaMinChunk = 512
	arenaOwn      = 4 << 10
)

// keep returns a copy of b that does not alias the input: in a batch,
// carved from the arena (capacity clipped, so an append to it cannot
// reach a neighbour); otherwise a new allocation.
func (s *scanner) keep(b []byte) []byte {
	if !s.batch || len(b) > arenaOwn {
		return append([]byte(nil), b...)
	}
	if cap(s.arena)-len(s.arena) < len(b) {
		s.arena = make([]byte, 0, min(max(len(s.b)-s.i, arenaMinChunk), arenaChunk))
	}
	n := len(s.arena)
	s.arena = append(s.arena, b...)
	return s.arena[n:len(s.arena):len(s.arena)]
}

// keepString is keep for a string.
func (s *scanner) keepString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if !s.batch || len(b) > arenaOwn {
		return string(b)
	}
	k := s.keep(b)
	return unsafe.String(&k[0], len(k))
}

// keepCompact keeps raw, a JSON value the scanner accepted, compacted
// as appendCompact does.
func (s *scanner) keepCompact(raw []byte) []byte {
	if isCompact(raw) {
		return s.keep(raw)
	}
	if !s.batch {
		return appendCompact(nil, raw)
	}
	s.tmp = appendCompact(s.tmp[:0], raw)
	return s.keep(s.tmp)
}

// keepCompactString is keepCompact for a string.
func (s *scanner) keepCompactString(raw []byte) string {
	if isCompact(raw) {
		return s.keepString(raw)
	}
	s.tmp = appendCompact(s.tmp[:0], raw)
	return s.keepString(s.tmp)
}

// strInterned is str for a value that likely repeats (attribute idx of
// internIndex): a plain string already seen in this batch is returned
// without allocating.
func (s *scanner) strInterned(idx int) (string, error) {
	raw, plain, err := s.rawString()
	if err != nil {
		return "", err
	}
	if !plain {
		return s.unquoteKeep(raw)
	}
	return s.internPlain(idx, raw), nil
}

// internPlain returns the plain string body raw (no escapes) as
// strInterned does: without allocating when it was seen in this batch.
func (s *scanner) internPlain(idx int, raw []byte) string {
	if string(raw) == "1.0" {
		return "1.0"
	}
	if v := s.last[idx]; v == string(raw) && v != "" {
		return v
	}
	v, ok := s.interned[string(raw)]
	if !ok {
		v = s.keepString(raw)
		if s.interned != nil && len(s.interned) < maxInterned {
			s.interned[v] = v
		}
	}
	s.last[idx] = v
	return v
}

// unquoteKeep is unquote of a string body, kept as keepString keeps it.
func (s *scanner) unquoteKeep(raw []byte) (string, error) {
	out, err := appendUnquote(s.tmp[:0], raw)
	s.tmp = out[:0]
	if err != nil {
		return "", err
	}
	return s.keepString(out), nil
}

// view returns the string at the cursor without copying it when it is
// plain: a string that aliases the input, for values that are parsed
// (a priority, a time) and never kept.
func (s *scanner) view() (string, error) {
	raw, plain, err := s.rawString()
	if err != nil {
		return "", err
	}
	if !plain {
		return unquote(raw)
	}
	if len(raw) == 0 {
		return "", nil
	}
	return unsafe.String(&raw[0], len(raw)), nil
}

// SWAR (8 bytes at a time) tests of string and JSON text.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// plain8 reports whether the 8 bytes of x are all printable ASCII other
// than '"' and '\\': bytes a JSON string holds as they are and that need
// no escaping when written. (Per byte: < 0x20 borrows into its top bit,
// '"' and '\\' become 0 by the XOR and then borrow, >= 0x80 has it set; a
// borrow only spreads upward from a byte that was already caught.)
func plain8(x uint64) bool {
	return ((x-0x20*lsb)|((x^0x22*lsb)-lsb)|((x^0x5c*lsb)-lsb)|x)&msb == 0
}

// load8 returns the first 8 bytes of s (len(s) >= 8), little-endian.
func load8(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

var (
	errSyntax    = errors.New("malformed JSON")
	errBadUTF8   = errors.New("not valid UTF-8")
	errSurrogate = errors.New("lone surrogate in \\u escape")
)

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// atEnd reports whether only whitespace is left. (peek returns 0 at the
// end, but also for a NUL byte.)
func (s *scanner) atEnd() bool {
	s.ws()
	return s.i >= len(s.b)
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		return s.errorf("want '" + string(c) + "'")
	}
	s.i++
	return nil
}

func (s *scanner) errorf(msg string) error {
	return &FieldError{Field: "", Err: ErrInvalid, Msg: "malformed JSON at offset " + strconv.Itoa(s.i) + ": " + msg}
}

// rawString returns the bytes between the quotes of the string at the
// cursor and whether it contains escapes or non-ASCII bytes (then it must
// go through str to be decoded). It refuses what is not a valid JSON
// string of Unicode text: raw control characters, unknown escapes, invalid
// UTF-8 and \u escapes of lone surrogates.
func (s *scanner) rawString() (raw []byte, plain bool, err error) {
	if s.peek() != '"' {
		return nil, false, s.errorf("want a string")
	}
	b := s.b
	i := s.i + 1 // the cursor in a local: the loop does not store it
	start := i
	plain = true
	for {
		for len(b)-i >= 8 && plain8(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		if i >= len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return b[start:i], plain, nil
		case c == '\\':
			plain = false
			s.i = i
			if err := s.escape(); err != nil {
				return nil, false, err
			}
			i = s.i
		case c < 0x20:
			s.i = i
			return nil, false, s.errorf("control character in string")
		case c >= utf8.RuneSelf:
			plain = false
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				s.i = i
				return nil, false, s.errorf("invalid UTF-8 in string")
			}
			i += size
		default:
			i++
		}
	}
	s.i = i
	return nil, false, s.errorf("unterminated string")
}

// escape checks the escape sequence at the cursor (a backslash) and moves
// past it. A \u escape of a high surrogate must be followed by one of a
// low surrogate, and a low surrogate must not stand alone.
func (s *scanner) escape() error {
	if s.i+1 >= len(s.b) {
		return s.errorf("unterminated string")
	}
	switch s.b[s.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i += 2
		return nil
	case 'u':
	default:
		return s.errorf("unknown escape in string")
	}
	r, ok := hex4(s.b[min(s.i+2, len(s.b)):])
	if !ok {
		return s.errorf("bad \\u escape in string")
	}
	s.i += 6
	switch {
	case r >= 0xDC00 && r <= 0xDFFF:
		return s.errorf("lone surrogate in \\u escape")
	case r >= 0xD800 && r <= 0xDBFF:
		if s.i+6 > len(s.b) || s.b[s.i] != '\\' || s.b[s.i+1] != 'u' {
			return s.errorf("lone surrogate in \\u escape")
		}
		r2, ok := hex4(s.b[s.i+2:])
		if !ok || r2 < 0xDC00 || r2 > 0xDFFF {
			return s.errorf("lone surrogate in \\u escape")
		}
		s.i += 6
	}
	return nil
}

// str reads a string value, kept (keepString).
func (s *scanner) str() (string, error) {
	raw, plain, err := s.rawString()
	if err != nil {
		return "", err
	}
	if plain {
		return s.keepString(raw), nil
	}
	return s.unquoteKeep(raw)
}

// unquote decodes the body of a JSON string that rawString accepted (so
// its escapes are well formed and its UTF-8 valid); it still refuses what
// rawString would, for callers with other input.
func unquote(raw []byte) (string, error) {
	out, err := appendUnquote(make([]byte, 0, len(raw)), raw)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// appendUnquote is unquote appending to out.
func appendUnquote(out, raw []byte) ([]byte, error) {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size == 1 {
				return out, errBadUTF8
			}
			out = append(out, raw[i:i+size]...)
			i += size
			continue
		}
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(raw) {
			return out, errSyntax
		}
		switch raw[i+1] {
		case '"', '\\', '/':
			out = append(out, raw[i+1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if i+6 > len(raw) {
				return out, errSyntax
			}
			r, ok := hex4(raw[i+2 : i+6])
			if !ok {
				return out, errSyntax
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
					return out, errSurrogate
				}
				r2, ok := hex4(raw[i+2 : i+6])
				dec := utf16.DecodeRune(r, r2)
				if !ok || dec == utf8.RuneError {
					return out, errSurrogate
				}
				out = utf8.AppendRune(out, dec)
				i += 6
				continue
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return out, errSyntax
		}
		i += 2
	}
	return out, nil
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// value skips one JSON value and returns its raw bytes (validated).
func (s *scanner) value() ([]byte, error) {
	s.ws()
	start := s.i
	if err := s.skip(0); err != nil {
		return nil, err
	}
	return s.b[start:s.i], nil
}

const maxDepth = 10000

func (s *scanner) skip(depth int) error {
	if depth > maxDepth {
		return s.errorf("nesting too deep")
	}
	switch c := s.peek(); {
	case c == '"':
		_, _, err := s.rawString()
		if err != nil {
			return err
		}
		return nil
	case c == '{':
		s.i++
		if s.peek() == '}' {
			s.i++
			return nil
		}
		for {
			if _, _, err := s.rawString(); err != nil {
				return err
			}
			if err := s.expect(':'); err != nil {
				return err
			}
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			switch s.peek() {
			case ',':
				s.i++
			case '}':
				s.i++
				return nil
			default:
				return s.errorf("want ',' or '}'")
			}
		}
	case c == '[':
		s.i++
		if s.peek() == ']' {
			s.i++
			return nil
		}
		for {
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return nil
			default:
				return s.errorf("want ',' or ']'")
			}
		}
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	default:
		return s.errorf("unexpected character")
	}
}

func (s *scanner) literal(lit string) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return s.errorf("bad literal")
	}
	s.i += len(lit)
	return nil
}

// number validates the JSON number grammar at the cursor.
func (s *scanner) number() error {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return s.errorf("bad number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return s.errorf("bad number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return s.errorf("bad number")
		}
	}
	s.i = i
	return nil
}

// appendCompact appends the JSON text raw, which the scanner accepted, to
// dst without insignificant whitespace and with U+2028 and U+2029 escaped,
// so that it holds no line break of any kind.
func appendCompact(dst, raw []byte) []byte {
	inStr := false
	start := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if inStr {
			switch {
			case c == '\\':
				i++ // the escaped byte cannot end the string
			case c == '"':
				inStr = false
			case c == 0xE2 && i+2 < len(raw) && raw[i+1] == 0x80 && (raw[i+2] == 0xA8 || raw[i+2] == 0xA9):
				dst = append(dst, raw[start:i]...)
				dst = append(dst, `\u202`...)
				dst = append(dst, hexDigits[raw[i+2]&0xf])
				i += 2
				start = i + 1
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case ' ', '\t', '\r', '\n':
			dst = append(dst, raw[start:i]...)
			start = i + 1
		}
	}
	return append(dst, raw[start:]...)
}

// isCompact reports whether raw, which the scanner accepted, is already
// what appendCompact would make of it.
func isCompact(raw []byte) bool {
	// Fast path: 8 bytes at a time, none white space (<= 0x20) or the
	// start of a multi-byte character (>= 0x80).
	n := 0
	for len(raw)-n >= 8 {
		if x := binary.LittleEndian.Uint64(raw[n:]); ((x-0x21*lsb)|x)&msb != 0 {
			break
		}
		n += 8
	}
	for i := n; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == ' ', c == '\t', c == '\r', c == '\n':
			return false
		case c == 0xE2 && i+2 < len(raw) && raw[i+1] == 0x80 && (raw[i+2] == 0xA8 || raw[i+2] == 0xA9):
			return false
		}
	}
	return true
}

// scanJSON checks that data is exactly one JSON value (surrounding
// whitespace allowed) of valid Unicode text and returns the value's text.
func scanJSON(data []byte) ([]byte, error) {
	s := scanner{b: data}
	v, err := s.value()
	if err != nil {
		return nil, err
	}
	if !s.atEnd() {
		return nil, s.errorf("trailing data after the value")
	}
	return v, nil
}

// validKeyText reports whether key is printable ASCII of a sensible length,
// fit to be named in an error.
func validKeyText(key []byte) bool {
	if len(key) == 0 || len(key) > 64 {
		return false
	}
	for _, c := range key {
		if c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}
