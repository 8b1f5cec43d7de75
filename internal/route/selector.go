package route

import (
	"errors"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/filter"
	"github.com/semprop/semprop/internal/filter/glob"
)

// Selector is what every subscription takes: a type pattern, a path glob
// on the subject, and a filter expression — e.g. `semprop tail 'fs.>'
// --path '/data/**/*.md' --filter 'size > 0'`. Empty parts select
// everything.
type Selector struct {
	Type   string `json:"type,omitempty" yaml:"type,omitempty"`
	Path   string `json:"path,omitempty" yaml:"path,omitempty"`
	Filter string `json:"filter,omitempty" yaml:"filter,omitempty"`
}

// CompiledSelector is a validated Selector, compiled once. It is immutable
// and safe for concurrent use.
type CompiledSelector struct {
	sel    Selector
	typ    *Pattern      // never nil: "" compiles to ">"
	path   *glob.Pattern // nil: any subject
	filter filter.Filter // nil: no filter
}

// Compile validates and compiles the selector; see ParseSelector.
func (s Selector) Compile() (*CompiledSelector, error) {
	return ParseSelector(s.Type, s.Path, s.Filter)
}

// ParseSelector validates and compiles a type pattern, a path glob (or
// "re:" regular expression) and a filter expression. The error wraps
// the cause and ErrBadSelector, and starts with the part that is wrong:
// `type: ...`, `path: ...` or `filter: ...`.
func ParseSelector(typ, path, filterExpr string) (*CompiledSelector, error) {
	cs := &CompiledSelector{sel: Selector{Type: typ, Path: path, Filter: filterExpr}}
	if typ == "" {
		typ = ">"
	}
	p, err := ParsePattern(typ)
	if err != nil {
		return nil, &selectorError{part: "type", err: err}
	}
	cs.typ = p
	if path != "" && path != "**" {
		g, err := glob.Compile(path)
		if err != nil {
			return nil, &selectorError{part: "path", err: err}
		}
		cs.path = g
	}
	if filterExpr != "" {
		f, err := filter.Expr(filterExpr)
		if err != nil {
			return nil, &selectorError{part: "filter", err: err}
		}
		cs.filter = f
	}
	return cs, nil
}

// selectorError is a selector part's error: it says the part and the
// cause once, and is ErrBadSelector as well as the cause (its message does
// not repeat the package's prefix).
type selectorError struct {
	part string
	err  error
}

func (e *selectorError) Error() string   { return e.part + ": " + e.err.Error() }
func (e *selectorError) Unwrap() []error { return []error{e.err, ErrBadSelector} }

// SelectorPart returns the part of a selector that err says is wrong
// ("type", "path" or "filter"), or "" when err is not a selector error.
func SelectorPart(err error) string {
	var se *selectorError
	if errors.As(err, &se) {
		return se.part
	}
	return ""
}

// Selector returns the selector as given.
func (s *CompiledSelector) Selector() Selector { return s.sel }

// Pattern returns the compiled type pattern.
func (s *CompiledSelector) Pattern() *Pattern { return s.typ }

// Match reports whether ev passes all three parts. It does not allocate
// for native filters and lowered expressions.
func (s *CompiledSelector) Match(ev *event.Event) bool {
	return s.typ.Match(ev.Type) && s.matchRest(ev)
}

// dir is the literal directory of the path glob, or "".
func (s *CompiledSelector) dir() string {
	if s.path == nil {
		return ""
	}
	return s.path.Dir()
}

// matchRest checks the path and filter, for callers that matched the type.
func (s *CompiledSelector) matchRest(ev *event.Event) bool {
	if s.path != nil && !s.path.Match(ev.Subject) {
		return false
	}
	return s.filter == nil || s.filter.Match(ev)
}
