package action

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/semprop/semprop/internal/rules"
)

// Check validates the actions of every rule in set against the registry:
// known types, known and required arguments, and the values that are not
// templates (durations, integers). Errors name the file, the line and
// the rule, like rules.Load's, and wrap ErrArgs or ErrUnknownType.
func (r *Registry) Check(set *rules.Set) error {
	for _, rule := range set.Rules {
		for i, a := range rule.Actions {
			at := func(line int, format string, args ...any) string {
				return fmt.Sprintf("%s:%d: rule %q: action %d (%s): %s", rule.File, line, rule.Name, i+1, a.Type, fmt.Sprintf(format, args...))
			}
			t, ok := r.Lookup(a.Type)
			if !ok {
				return fmt.Errorf("%s: %w", at(a.Line, "want one of %s", strings.Join(r.Names(), ", ")), ErrUnknownType)
			}
			for _, req := range t.Required {
				if _, ok := a.Args[req]; !ok {
					return fmt.Errorf("%s: %w", at(a.Line, "%s is required", req), ErrArgs)
				}
			}
			names := make([]string, 0, len(a.Args))
			for n := range a.Args {
				names = append(names, n)
			}
			slices.Sort(names)
			for _, n := range names {
				arg := a.Args[n]
				kind, ok := t.Args[n]
				if !ok {
					known := make([]string, 0, len(t.Args))
					for k := range t.Args {
						known = append(known, k)
					}
					slices.Sort(known)
					return fmt.Errorf("%s: %w", at(arg.Line, "unknown argument %q (want %s)", n, strings.Join(known, ", ")), ErrArgs)
				}
				if arg.IsList && kind != ArgList {
					return fmt.Errorf("%s: %w", at(arg.Line, "%s: want a string, not a list", n), ErrArgs)
				}
				if strings.Contains(arg.Value, "{{") {
					continue
				}
				switch kind {
				case ArgDuration:
					if d, err := time.ParseDuration(arg.Value); err != nil || d < 0 {
						return fmt.Errorf("%s: %w", at(arg.Line, "%s: %q: want a duration such as 2s", n, arg.Value), ErrArgs)
					}
				case ArgInt:
					if v, err := strconv.Atoi(arg.Value); err != nil || v < 0 {
						return fmt.Errorf("%s: %w", at(arg.Line, "%s: %q: want a non-negative integer", n, arg.Value), ErrArgs)
					}
				}
			}
		}
	}
	return nil
}
