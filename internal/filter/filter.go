// Package filter decides whether an event is of interest: native predicates
// for the CloudEvents Subscriptions filter dialects (exact, prefix, suffix,
// all, any, not) plus glob and numeric range, expressions in the
// expr-lang/expr language, composites that evaluate cheap filters first,
// and the security filters — deny by path pattern and per-subscription
// redaction.
//
// Filters may come from untrusted clients, so their cost is bounded: a glob
// matches in time proportional to pattern × path, and an expression is
// refused when it is compiled unless its worst-case work per event stays
// within MaxExprCost (see Expr).
//
// Every Filter is immutable once built and safe for concurrent use; Match
// never modifies the event. Native filters and the common expression shapes
// do not allocate.
package filter

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/semprop/semprop/event"
)

// Errors returned when building filters. Errors wrap one of these and name
// the rule and the part of the specification that is wrong.
var (
	ErrSpec      = errors.New("filter: invalid specification")
	ErrAttribute = errors.New("filter: invalid attribute name")
	ErrExpr      = errors.New("filter: invalid expression")
)

// errorf formats an error that wraps sentinel after the message, so that
// errors read from the outermost context inwards and end with the sentinel.
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, sentinel)...)
}

// Filter decides whether an event passes. Implementations are immutable and
// safe for concurrent use; Match must not modify the event.
type Filter interface {
	// Match reports whether ev passes the filter.
	Match(ev *event.Event) bool
	// Kind names the filter: "exact", "prefix", "suffix", "glob", "range",
	// "expr", "all", "any", "not", "deny", "true".
	Kind() string
	// Cost is the relative cost of Match; composites evaluate cheaper
	// filters first. An exact comparison costs 1.
	Cost() int
	// Validate reports whether the filter's configuration is usable.
	Validate() error
}

// The costs of the native filters, relative to one string comparison.
const (
	costCompare = 1
	costGlob    = 4
	costRegexp  = 30
	costExpr    = 60
)

// native is a filter compiled to a closure.
type native struct {
	kind  string
	desc  string // e.g. `subject="/a"`, for String
	cost  int
	rs    readSet
	match func(*event.Event) bool
	err   error // configuration error found while compiling, for Validate
	// span is set for lowered numeric comparisons, so that `x > a && x < b`
	// merges into one range check.
	span *span
}

// span is an inclusive range on a numeric field whose absent value reads
// as -1 (expression semantics).
type span struct {
	f      *field
	lo, hi int64
}

var _ Filter = (*native)(nil)

func (n *native) Match(ev *event.Event) bool { return n.match(ev) }
func (n *native) Kind() string               { return n.kind }
func (n *native) Cost() int                  { return n.cost }
func (n *native) Validate() error            { return n.err }
func (n *native) reads() readSet             { return n.rs }
func (n *native) String() string             { return n.kind + "(" + n.desc + ")" }

// True returns a filter that passes every event.
func True() Filter {
	return &native{kind: "true", match: func(*event.Event) bool { return true }}
}

// Exact returns a filter that passes events whose attribute equals value
// exactly. Numeric attributes (pid, uid, size, …) compare as integers.
func Exact(attr, value string) (Filter, error) {
	f, err := lookupField(attr)
	if err != nil {
		return nil, err
	}
	n := &native{kind: "exact", desc: fmt.Sprintf("%s=%q", attr, value), cost: costCompare, rs: f.reads()}
	switch {
	case attr == "type":
		n.match = func(ev *event.Event) bool { return ev.Type == value }
	case attr == "subject" || attr == "path":
		n.match = func(ev *event.Event) bool { return ev.Subject == value }
	case f.numeric():
		v, ok := parseInt(value)
		if !ok {
			return nil, errorf(ErrSpec, "attribute %q is numeric, value %q is not an integer", attr, value)
		}
		n.match = func(ev *event.Event) bool {
			got, ok := f.numVal(ev)
			return ok && got == v
		}
	default:
		n.match = func(ev *event.Event) bool {
			got, ok := f.strVal(ev)
			return ok && got == value
		}
	}
	return n, nil
}

// Prefix returns a filter that passes events whose attribute starts with
// value. Numeric attributes compare their decimal form.
func Prefix(attr, value string) (Filter, error) {
	return affix("prefix", attr, value, true)
}

// Suffix returns a filter that passes events whose attribute ends with
// value. Numeric attributes compare their decimal form.
func Suffix(attr, value string) (Filter, error) {
	return affix("suffix", attr, value, false)
}

func affix(kind, attr, value string, prefix bool) (Filter, error) {
	fn := strings.HasSuffix
	if prefix {
		fn = strings.HasPrefix
	}
	f, err := lookupField(attr)
	if err != nil {
		return nil, err
	}
	if value == "" {
		return nil, errorf(ErrSpec, "attribute %q: empty value", attr)
	}
	n := &native{kind: kind, desc: fmt.Sprintf("%s=%q", attr, value), cost: costCompare, rs: f.reads()}
	switch {
	case attr == "type":
		n.match = func(ev *event.Event) bool { return fn(ev.Type, value) }
	case attr == "subject" || attr == "path":
		n.match = func(ev *event.Event) bool { return fn(ev.Subject, value) }
	case f.numeric():
		bval := []byte(value)
		n.match = func(ev *event.Event) bool {
			v, ok := f.numVal(ev)
			if !ok {
				return false
			}
			var buf [24]byte
			b := appendInt(buf[:0], v)
			if prefix {
				return bytes.HasPrefix(b, bval)
			}
			return bytes.HasSuffix(b, bval)
		}
	default:
		n.match = func(ev *event.Event) bool {
			s, ok := f.strVal(ev)
			return ok && fn(s, value)
		}
	}
	return n, nil
}

// Range returns a filter that passes events whose numeric attribute lies
// within [min, max]; a nil bound is open. String attributes are parsed as
// decimal integers; an absent or unparsable attribute does not pass.
func Range(attr string, min, max *int64) (Filter, error) {
	f, err := lookupField(attr)
	if err != nil {
		return nil, err
	}
	if min == nil && max == nil {
		return nil, errorf(ErrSpec, "attribute %q: neither min nor max", attr)
	}
	if min != nil && max != nil && *min > *max {
		return nil, errorf(ErrSpec, "attribute %q: min %d > max %d", attr, *min, *max)
	}
	lo, hi := int64(-1<<63), int64(1<<63-1)
	if min != nil {
		lo = *min
	}
	if max != nil {
		hi = *max
	}
	n := &native{kind: "range", desc: fmt.Sprintf("%s in [%d,%d]", attr, lo, hi), cost: costCompare, rs: f.reads()}
	if attr == "size" {
		n.match = func(ev *event.Event) bool {
			return ev.Context.Known&event.HasSize != 0 && ev.Context.Size >= lo && ev.Context.Size <= hi
		}
		return n, nil
	}
	n.match = func(ev *event.Event) bool {
		v, ok := f.number(ev)
		return ok && v >= lo && v <= hi
	}
	return n, nil
}

func appendInt(b []byte, v int64) []byte {
	if v < 0 {
		b = append(b, '-')
		if v == -1<<63 {
			return append(b, "9223372036854775808"...)
		}
		v = -v
	}
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

// composite is all, any or not over child filters.
type composite struct {
	kind string
	subs []Filter                  // evaluation order: cheapest first
	fns  []func(*event.Event) bool // subs' Match, native closures unwrapped
	cost int
}

var _ Filter = (*composite)(nil)

// All returns a filter that passes events that pass every filter in fs,
// evaluating cheaper filters first and stopping at the first failure. All
// of nothing passes everything.
func All(fs ...Filter) Filter { return newComposite("all", fs) }

// Any returns a filter that passes events that pass at least one filter in
// fs, evaluating cheaper filters first and stopping at the first success.
// Any of nothing passes nothing.
func Any(fs ...Filter) Filter { return newComposite("any", fs) }

// Not returns a filter that passes exactly the events f rejects.
func Not(f Filter) Filter {
	if n, ok := f.(*native); ok && n.err == nil {
		m := n.match
		return &native{kind: "not", desc: n.String(), cost: n.cost, rs: n.rs,
			match: func(ev *event.Event) bool { return !m(ev) }}
	}
	return &composite{kind: "not", subs: []Filter{f}, fns: []func(*event.Event) bool{f.Match}, cost: f.Cost()}
}

// matchFunc returns the cheapest way to call f.Match.
func matchFunc(f Filter) func(*event.Event) bool {
	if n, ok := f.(*native); ok {
		return n.match
	}
	return f.Match
}

func newComposite(kind string, fs []Filter) Filter {
	if len(fs) == 1 {
		return fs[0]
	}
	// all(all(a, b), c) is all(a, b, c): one loop, cheapest first.
	var subs []Filter
	for _, f := range fs {
		if c, ok := f.(*composite); ok && c.kind == kind {
			subs = append(subs, c.subs...)
		} else {
			subs = append(subs, f)
		}
	}
	slices.SortStableFunc(subs, func(a, b Filter) int { return a.Cost() - b.Cost() })
	c := &composite{kind: kind, subs: subs}
	for _, f := range subs {
		c.cost += f.Cost()
		c.fns = append(c.fns, matchFunc(f))
	}
	return c
}

func (c *composite) Match(ev *event.Event) bool {
	switch c.kind {
	case "all":
		for _, f := range c.fns {
			if !f(ev) {
				return false
			}
		}
		return true
	case "any":
		for _, f := range c.fns {
			if f(ev) {
				return true
			}
		}
		return false
	}
	return !c.fns[0](ev)
}

func (c *composite) Kind() string { return c.kind }
func (c *composite) Cost() int    { return c.cost }

func (c *composite) Validate() error {
	for i, f := range c.subs {
		if f == nil {
			return errorf(ErrSpec, "%s[%d]: nil filter", c.kind, i)
		}
		if err := f.Validate(); err != nil {
			return fmt.Errorf("%s[%d]: %w", c.kind, i, err)
		}
	}
	return nil
}

func (c *composite) reads() readSet {
	var rs readSet
	for _, f := range c.subs {
		rs = rs.union(readsOf(f))
	}
	return rs
}

func (c *composite) String() string {
	parts := make([]string, len(c.subs))
	for i, f := range c.subs {
		parts[i] = fmt.Sprint(f)
	}
	return c.kind + "(" + strings.Join(parts, ", ") + ")"
}

// reader is implemented by filters that know which fields they read.
type reader interface{ reads() readSet }

func readsOf(f Filter) readSet {
	if r, ok := f.(reader); ok {
		return r.reads()
	}
	return readSet{unknown: true}
}
