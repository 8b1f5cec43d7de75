package event

import (
	"errors"
	"mime"
	"slices"
	"strings"
	"unicode/utf8"
)

var errPercent = errors.New("malformed percent escape")

// ParseBinaryMode decodes an event sent in the CloudEvents HTTP binding's
// binary content mode: attributes in ce-* headers, Content-Type as
// datacontenttype, the body as data. header is an http.Header (or any
// header map; names are matched case-insensitively).
//
// Header values are unquoted (RFC 7230 quoted strings) and percent-decoded
// once, as the binding requires; a value that is not valid UTF-8 once
// decoded is refused, as is a malformed percent escape. As in structured
// mode, specversion, id, source and type are required. A body whose
// Content-Type is JSON (application/json, text/json, any +json) must be
// exactly one JSON value of valid Unicode text, and becomes Data in
// compact form; any other body is opaque bytes (FlagDataBinary). ce-data,
// ce-data_base64 and ce-datacontenttype are refused: the body and
// Content-Type carry those. Errors are *FieldError naming the attribute.
// The event does not alias body.
func ParseBinaryMode(header map[string][]string, body []byte) (*Event, error) {
	var ctype string
	type attr struct{ name, value string }
	attrs := make([]attr, 0, 8)
	for k, vs := range header {
		lk := strings.ToLower(k)
		if lk == "content-type" {
			if len(vs) > 0 {
				ctype = vs[0]
			}
			continue
		}
		name, ok := strings.CutPrefix(lk, "ce-")
		if !ok || len(vs) == 0 {
			continue
		}
		switch name {
		case "data", "data_base64", "datacontenttype":
			return nil, invalid(name, "not a header in binary mode: the body is the data and Content-Type its type")
		}
		if len(vs) > 1 || slices.ContainsFunc(attrs, func(a attr) bool { return a.name == name }) {
			return nil, invalid(name, "header ce-%s given more than once", name)
		}
		attrs = append(attrs, attr{name, vs[0]})
	}
	// Header maps have no order; extensions are kept sorted by name.
	slices.SortFunc(attrs, func(a, b attr) int { return strings.Compare(a.name, b.name) })
	obj := make([]byte, 0, 256)
	obj = append(obj, '{')
	for _, a := range attrs {
		name := a.name
		v, err := headerValue(a.value)
		if err != nil {
			return nil, invalid(name, "header ce-%s: %v", name, err)
		}
		if len(obj) > 1 {
			obj = append(obj, ',')
		}
		obj = appendJSONString(obj, name)
		obj = append(obj, ':')
		obj = appendJSONString(obj, v)
	}
	obj = append(obj, '}')
	e := new(Event)
	s := scanner{b: obj}
	if err := e.decodeObject(&s, true); err != nil {
		return nil, err
	}
	if ctype != "" {
		if !utf8.ValidString(ctype) {
			return nil, invalid("datacontenttype", "Content-Type is not valid UTF-8")
		}
		e.DataContentType = ctype
	}
	if len(body) == 0 {
		return e, nil
	}
	mt, _, err := mime.ParseMediaType(ctype)
	if err != nil && mt == "" {
		// A malformed type still says what it claims to be.
		mt, _, _ = strings.Cut(ctype, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
	}
	if !IsJSONMediaType(mt) {
		e.Data = append([]byte(nil), body...)
		e.Flags |= FlagDataBinary
		return e, nil
	}
	raw, err := scanJSON(body)
	if err != nil {
		return nil, invalid("data", "body is not the JSON its Content-Type %q claims: %s", ctype, fieldMsg(err))
	}
	if string(raw) != "null" {
		e.Data = appendCompact(nil, raw)
	}
	return e, nil
}

// IsJSONMediaType reports whether the media type mt (without parameters,
// lower case, as mime.ParseMediaType returns it) says its content is JSON:
// application/json, text/json or any type with the +json suffix.
func IsJSONMediaType(mt string) bool {
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// headerValue decodes a binary-mode header value: an RFC 7230 quoted
// string is unquoted, then percent escapes are decoded once; the result
// must be valid UTF-8.
func headerValue(v string) (string, error) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		var sb strings.Builder
		for i := 1; i < len(v)-1; i++ {
			if v[i] == '\\' && i+1 < len(v)-1 {
				i++
			}
			sb.WriteByte(v[i])
		}
		v = sb.String()
	}
	if strings.IndexByte(v, '%') >= 0 {
		out := make([]byte, 0, len(v))
		for i := 0; i < len(v); i++ {
			if v[i] != '%' {
				out = append(out, v[i])
				continue
			}
			if i+2 >= len(v) {
				return "", errPercent
			}
			hi, ok1 := unhex(v[i+1])
			lo, ok2 := unhex(v[i+2])
			if !ok1 || !ok2 {
				return "", errPercent
			}
			out = append(out, hi<<4|lo)
			i += 2
		}
		v = string(out)
	}
	if !utf8.ValidString(v) {
		return "", errBadUTF8
	}
	return v, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
