package event

import (
	"bytes"
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
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
}

// maxInterned bounds scanner.interned.
const maxInterned = 64

// strInterned is str for a value that likely repeats: a plain string
// already seen in this batch is returned without allocating.
func (s *scanner) strInterned() (string, error) {
	raw, plain, err := s.rawString()
	if err != nil {
		return "", err
	}
	if !plain {
		return unquote(raw)
	}
	if string(raw) == "1.0" {
		return "1.0", nil
	}
	if v, ok := s.interned[string(raw)]; ok {
		return v, nil
	}
	v := string(raw)
	if s.interned != nil && len(s.interned) < maxInterned {
		s.interned[v] = v
	}
	return v, nil
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
	s.i++
	start := s.i
	plain = true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			raw = s.b[start:s.i]
			s.i++
			return raw, plain, nil
		case c == '\\':
			plain = false
			if err := s.escape(); err != nil {
				return nil, false, err
			}
		case c < 0x20:
			return nil, false, s.errorf("control character in string")
		case c >= utf8.RuneSelf:
			plain = false
			r, size := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && size == 1 {
				return nil, false, s.errorf("invalid UTF-8 in string")
			}
			s.i += size
		default:
			s.i++
		}
	}
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

// str reads a string value.
func (s *scanner) str() (string, error) {
	raw, plain, err := s.rawString()
	if err != nil {
		return "", err
	}
	if plain {
		return string(raw), nil
	}
	return unquote(raw)
}

// unquote decodes the body of a JSON string that rawString accepted (so
// its escapes are well formed and its UTF-8 valid); it still refuses what
// rawString would, for callers with other input.
func unquote(raw []byte) (string, error) {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size == 1 {
				return "", errBadUTF8
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
			return "", errSyntax
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
				return "", errSyntax
			}
			r, ok := hex4(raw[i+2 : i+6])
			if !ok {
				return "", errSyntax
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
					return "", errSurrogate
				}
				r2, ok := hex4(raw[i+2 : i+6])
				dec := utf16.DecodeRune(r, r2)
				if !ok || dec == utf8.RuneError {
					return "", errSurrogate
				}
				out = utf8.AppendRune(out, dec)
				i += 6
				continue
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return "", errSyntax
		}
		i += 2
	}
	return string(out), nil
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
	for i, c := range raw {
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
