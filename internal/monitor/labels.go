package monitor

import (
	"maps"
	"slices"
	"strings"

	"github.com/zeebo/xxh3"
)

// Labels are the label pairs of a series or an alert. The metric name is
// not among them. A Labels value is not modified once built; copy it with
// Clone before changing it.
type Labels map[string]string

// Clone returns a copy of l (nil stays nil).
func (l Labels) Clone() Labels { return maps.Clone(l) }

// String renders l as {a="1", b="2"} in name order.
func (l Labels) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range slices.Sorted(maps.Keys(l)) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k)
		b.WriteString(`="`)
		b.WriteString(strings.ReplaceAll(l[k], `"`, `\"`))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// key is a canonical string for map keys: names and values in name order,
// separated by bytes that cannot occur in UTF-8 text.
func (l Labels) key() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(l)) {
		b.WriteString(k)
		b.WriteByte(0xff)
		b.WriteString(l[k])
		b.WriteByte(0xfe)
	}
	return b.String()
}

// Fingerprint identifies an alert by its labels: equal label sets have
// equal fingerprints. It is a 64-bit hash rendered as 16 hex digits.
func (l Labels) Fingerprint() string {
	const hex = "0123456789abcdef"
	h := xxh3.HashString(l.key())
	var out [16]byte
	for i := 15; i >= 0; i-- {
		out[i] = hex[h&0xf]
		h >>= 4
	}
	return string(out[:])
}

// without returns l without the named labels.
func (l Labels) without(names ...string) Labels {
	out := make(Labels, len(l))
	for k, v := range l {
		if !slices.Contains(names, k) {
			out[k] = v
		}
	}
	return out
}

// only returns the named labels of l (missing ones are left out).
func (l Labels) only(names []string) Labels {
	out := make(Labels, len(names))
	for _, n := range names {
		if v, ok := l[n]; ok {
			out[n] = v
		}
	}
	return out
}
