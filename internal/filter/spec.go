package filter

import (
	"fmt"
	"slices"
)

// Spec is the configuration form of a filter, as it appears in config files
// and in the HTTP API (JSON or YAML). It follows the CloudEvents
// Subscriptions API filter dialects: exactly one of the dialect fields is
// set. Exact, Prefix, Suffix, Glob and Range map attribute names to values;
// with several attributes, all must match.
//
//	{"all": [{"prefix": {"type": "fs."}}, {"glob": {"subject": "/data/**/*.md"}},
//	         {"not": {"exact": {"comm": "rsync"}}}, {"range": {"size": {"min": 1}}}]}
type Spec struct {
	// Name names the rule in error messages.
	Name string `json:"name,omitempty" yaml:"name,omitempty"`

	Exact  map[string]string `json:"exact,omitempty" yaml:"exact,omitempty"`
	Prefix map[string]string `json:"prefix,omitempty" yaml:"prefix,omitempty"`
	Suffix map[string]string `json:"suffix,omitempty" yaml:"suffix,omitempty"`
	Glob   map[string]string `json:"glob,omitempty" yaml:"glob,omitempty"`
	Range  map[string]Bounds `json:"range,omitempty" yaml:"range,omitempty"`
	All    []Spec            `json:"all,omitempty" yaml:"all,omitempty"`
	Any    []Spec            `json:"any,omitempty" yaml:"any,omitempty"`
	Not    *Spec             `json:"not,omitempty" yaml:"not,omitempty"`
	Expr   string            `json:"expr,omitempty" yaml:"expr,omitempty"`
	// Deny lists path patterns: events whose subject, old path or symlink
	// target matches one do not pass.
	Deny []string `json:"deny,omitempty" yaml:"deny,omitempty"`
}

// Bounds is an inclusive numeric range; a nil bound is open.
type Bounds struct {
	Min *int64 `json:"min,omitempty" yaml:"min,omitempty"`
	Max *int64 `json:"max,omitempty" yaml:"max,omitempty"`
}

// maxSpecDepth bounds the nesting of all/any/not.
const maxSpecDepth = 32

// Compile builds the filter a Spec describes and validates it. Errors wrap
// ErrSpec, ErrAttribute or ErrExpr and say which rule and which part is
// wrong, e.g. `filter "md-only": all[1]: range: attribute "size": min 9 >
// max 1`. Compile is safe for concurrent use.
func Compile(spec Spec) (Filter, error) {
	f, err := compileSpec(&spec, 0)
	if err == nil {
		err = f.Validate()
	}
	if err != nil {
		if spec.Name != "" {
			return nil, fmt.Errorf("filter %q: %w", spec.Name, err)
		}
		return nil, fmt.Errorf("filter: %w", err)
	}
	return f, nil
}

func compileSpec(s *Spec, depth int) (Filter, error) {
	if depth > maxSpecDepth {
		return nil, errorf(ErrSpec, "nested deeper than %d", maxSpecDepth)
	}
	var dialects []string
	for _, d := range []struct {
		name string
		set  bool
	}{
		{"exact", s.Exact != nil}, {"prefix", s.Prefix != nil}, {"suffix", s.Suffix != nil},
		{"glob", s.Glob != nil}, {"range", s.Range != nil}, {"all", s.All != nil},
		{"any", s.Any != nil}, {"not", s.Not != nil}, {"expr", s.Expr != ""}, {"deny", s.Deny != nil},
	} {
		if d.set {
			dialects = append(dialects, d.name)
		}
	}
	switch len(dialects) {
	case 0:
		return nil, errorf(ErrSpec, "no dialect (want one of exact, prefix, suffix, glob, range, all, any, not, expr, deny)")
	case 1:
	default:
		return nil, errorf(ErrSpec, "more than one dialect: %v", dialects)
	}
	named := func(f Filter, err error) (Filter, error) {
		if err != nil && s.Name != "" && depth > 0 {
			return nil, fmt.Errorf("rule %q: %w", s.Name, err)
		}
		return f, err
	}
	switch {
	case s.Exact != nil:
		return named(eachAttr("exact", s.Exact, Exact))
	case s.Prefix != nil:
		return named(eachAttr("prefix", s.Prefix, Prefix))
	case s.Suffix != nil:
		return named(eachAttr("suffix", s.Suffix, Suffix))
	case s.Glob != nil:
		return named(eachAttr("glob", s.Glob, Glob))
	case s.Range != nil:
		if len(s.Range) == 0 {
			return nil, errorf(ErrSpec, "range: no attributes")
		}
		var fs []Filter
		for _, k := range sortedKeys(s.Range) {
			b := s.Range[k]
			f, err := Range(k, b.Min, b.Max)
			if err != nil {
				return named(nil, fmt.Errorf("range: %w", err))
			}
			fs = append(fs, f)
		}
		return All(fs...), nil
	case s.All != nil || s.Any != nil:
		kind, subs := "all", s.All
		if s.Any != nil {
			kind, subs = "any", s.Any
		}
		if len(subs) == 0 {
			return nil, errorf(ErrSpec, "%s: empty list", kind)
		}
		fs := make([]Filter, len(subs))
		for i := range subs {
			f, err := compileSpec(&subs[i], depth+1)
			if err != nil {
				return named(nil, fmt.Errorf("%s[%d]: %w", kind, i, err))
			}
			fs[i] = f
		}
		if kind == "all" {
			return All(fs...), nil
		}
		return Any(fs...), nil
	case s.Not != nil:
		f, err := compileSpec(s.Not, depth+1)
		if err != nil {
			return named(nil, fmt.Errorf("not: %w", err))
		}
		return Not(f), nil
	case s.Expr != "":
		return named(Expr(s.Expr))
	default:
		if len(s.Deny) == 0 {
			return nil, errorf(ErrSpec, "deny: no patterns")
		}
		return named(Deny(s.Deny...))
	}
}

func eachAttr(kind string, m map[string]string, mk func(attr, value string) (Filter, error)) (Filter, error) {
	if len(m) == 0 {
		return nil, errorf(ErrSpec, "%s: no attributes", kind)
	}
	var fs []Filter
	for _, k := range sortedKeys(m) {
		f, err := mk(k, m[k])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
		fs = append(fs, f)
	}
	return All(fs...), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
