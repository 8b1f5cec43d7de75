package cluster

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Order is how two version vectors relate.
type Order int

// The possible relations of two version vectors.
const (
	Equal      Order = iota // same history
	Before                  // the receiver happened before the argument
	After                   // the receiver happened after the argument
	Concurrent              // neither saw the other: concurrent, needs a tie-break
)

// String returns "equal", "before", "after" or "concurrent".
func (o Order) String() string {
	return [...]string{"equal", "before", "after", "concurrent"}[o]
}

// VersionVector maps an instance ID to the number of events that instance
// has issued (as far as the holder knows). It orders events of independent
// semprop instances that are not one Raft cluster: an instance ticks its
// own entry for every event it issues and merges the vector of every event
// it receives from another instance before ticking. A VersionVector is a
// plain map: not safe for concurrent mutation.
type VersionVector map[string]uint64

// Tick records one more event issued by instance id and returns v.
func (v VersionVector) Tick(id string) VersionVector {
	v[id]++
	return v
}

// Merge raises every entry of v to at least o's and returns v.
func (v VersionVector) Merge(o VersionVector) VersionVector {
	for id, n := range o {
		if n > v[id] {
			v[id] = n
		}
	}
	return v
}

// Clone returns a copy of v.
func (v VersionVector) Clone() VersionVector { return maps.Clone(v) }

// Compare returns how v relates to o: Before if every entry of v is <= o's
// and one is smaller (o's event saw v's), After for the converse, Equal, or
// Concurrent.
func (v VersionVector) Compare(o VersionVector) Order {
	less, greater := false, false
	for id, n := range v {
		switch m := o[id]; {
		case n < m:
			less = true
		case n > m:
			greater = true
		}
	}
	for id, m := range o {
		if _, ok := v[id]; !ok && m > 0 {
			less = true
		}
	}
	switch {
	case less && greater:
		return Concurrent
	case less:
		return Before
	case greater:
		return After
	}
	return Equal
}

// String formats v as "id=n,id=n" with IDs sorted; zero entries are
// omitted. It is the form events carry in their "vv" attribute.
func (v VersionVector) String() string {
	ids := slices.Sorted(maps.Keys(v))
	var b strings.Builder
	for _, id := range ids {
		if v[id] == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(id)
		b.WriteByte('=')
		b.WriteString(strconv.FormatUint(v[id], 10))
	}
	return b.String()
}

// ParseVersionVector parses the String form.
func ParseVersionVector(s string) (VersionVector, error) {
	v := VersionVector{}
	if s == "" {
		return v, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		id, n, ok := strings.Cut(part, "=")
		if !ok || id == "" || strings.ContainsAny(id, "=,") {
			return nil, fmt.Errorf("cluster: version vector %q: bad entry %q", s, part)
		}
		c, err := strconv.ParseUint(n, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("cluster: version vector %q: entry %q: %w", s, part, err)
		}
		if _, dup := v[id]; dup {
			return nil, fmt.Errorf("cluster: version vector %q: %q twice", s, id)
		}
		v[id] = c
	}
	return v, nil
}
