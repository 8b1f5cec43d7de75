package replica

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// VersionVector maps an instance's name to the highest counter of its
// changes that a state has seen. The zero value (nil) is the empty vector;
// a VersionVector is a plain value, not safe for concurrent mutation.
type VersionVector map[string]uint64

// Ordering is how two version vectors relate.
type Ordering int8

// The orderings of Compare.
const (
	Equal      Ordering = iota // the same vector
	Before                     // strictly dominated by the other
	After                      // strictly dominates the other
	Concurrent                 // neither dominates
)

// Compare tells how v relates to w.
func (v VersionVector) Compare(w VersionVector) Ordering {
	less, more := false, false
	for k, a := range v {
		b := w[k]
		if a < b {
			less = true
		} else if a > b {
			more = true
		}
	}
	for k, b := range w {
		if _, ok := v[k]; !ok && b > 0 {
			less = true
		}
	}
	switch {
	case less && more:
		return Concurrent
	case less:
		return Before
	case more:
		return After
	}
	return Equal
}

// Covers reports whether v has seen everything w has (v >= w).
func (v VersionVector) Covers(w VersionVector) bool {
	for k, b := range w {
		if v[k] < b {
			return false
		}
	}
	return true
}

// Has reports whether v has seen change n of instance id.
func (v VersionVector) Has(id string, n uint64) bool { return v[id] >= n }

// Clone returns a copy of v (nil stays nil).
func (v VersionVector) Clone() VersionVector {
	if v == nil {
		return nil
	}
	return maps.Clone(v)
}

// Merge raises v to the pointwise maximum of v and w, in place, and
// returns v (allocated when v is nil and w is not empty).
func (v VersionVector) Merge(w VersionVector) VersionVector {
	for k, b := range w {
		if b == 0 {
			continue
		}
		if v == nil {
			v = make(VersionVector, len(w))
		}
		if v[k] < b {
			v[k] = b
		}
	}
	return v
}

// Sum is the number of changes v has seen, summed over instances.
func (v VersionVector) Sum() uint64 {
	var n uint64
	for _, c := range v {
		n += c
	}
	return n
}

// String formats v as "a:3,b:7", names sorted: the form of session tokens.
func (v VersionVector) String() string {
	keys := slices.Sorted(maps.Keys(v))
	var sb strings.Builder
	for _, k := range keys {
		if v[k] == 0 {
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(k)
		sb.WriteByte(':')
		sb.WriteString(strconv.FormatUint(v[k], 10))
	}
	return sb.String()
}

// ParseVersionVector parses the String form of a version vector. It takes
// untrusted input (session tokens): names must be valid instance names,
// and at most 1,024 entries are accepted.
func ParseVersionVector(s string) (VersionVector, error) {
	v := VersionVector{}
	if s == "" {
		return v, nil
	}
	for i, part := range strings.Split(s, ",") {
		if i >= maxVectorLen {
			return nil, fmt.Errorf("%w: more than %d entries", ErrBadVector, maxVectorLen)
		}
		name, num, ok := strings.Cut(part, ":")
		if !ok || !ValidName(name) {
			return nil, fmt.Errorf("%w: entry %q", ErrBadVector, part)
		}
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: entry %q", ErrBadVector, part)
		}
		if _, dup := v[name]; dup {
			return nil, fmt.Errorf("%w: %q twice", ErrBadVector, name)
		}
		if n > 0 {
			v[name] = n
		} else {
			v[name] = 0
		}
	}
	for k, n := range v {
		if n == 0 {
			delete(v, k)
		}
	}
	return v, nil
}

const maxVectorLen = 1024

// ValidName reports whether s can name an instance: 1 to 64 characters
// of letters, digits, '-', '_' and '.'.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
