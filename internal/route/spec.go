package route

import (
	"fmt"

	"github.com/semprop/semprop/internal/filter"
)

// Spec is the configuration form of a route (config file, /v1/routes),
// with targets by name. FromSpec turns it into a Route.
type Spec struct {
	Name string `json:"name" yaml:"name"`
	// Type, Path and Filter form the Selector.
	Type   string `json:"type,omitempty" yaml:"type,omitempty"`
	Path   string `json:"path,omitempty" yaml:"path,omitempty"`
	Filter string `json:"filter,omitempty" yaml:"filter,omitempty"`
	// Where is a further filter in the CloudEvents dialects.
	Where *filter.Spec `json:"where,omitempty" yaml:"where,omitempty"`
	// Deny lists path patterns whose events never take this route.
	Deny []string `json:"deny,omitempty" yaml:"deny,omitempty"`
	// Redact hides fields from this route's targets.
	Redact *filter.RedactSpec `json:"redact,omitempty" yaml:"redact,omitempty"`

	Targets  []string `json:"targets" yaml:"targets"`
	Strategy string   `json:"strategy,omitempty" yaml:"strategy,omitempty"` // broadcast, round-robin, weighted, key-hash, failover
	Weights  []int    `json:"weights,omitempty" yaml:"weights,omitempty"`
	Breakers bool     `json:"breakers,omitempty" yaml:"breakers,omitempty"`
}

// FromSpec validates s and builds its Route, resolving target names with
// resolve. Errors name the route and the part that is wrong, and wrap
// ErrBadRoute, ErrBadSelector or the filter package's errors. The selector
// is compiled again when the route is added.
func FromSpec[T comparable](s Spec, resolve func(name string) (T, error)) (Route[T], error) {
	rt := Route[T]{Name: s.Name, Selector: Selector{Type: s.Type, Path: s.Path, Filter: s.Filter},
		Weights: s.Weights, Breakers: s.Breakers}
	fail := func(err error) (Route[T], error) { return Route[T]{}, fmt.Errorf("route %q: %w", s.Name, err) }
	if s.Name == "" {
		return fail(fmt.Errorf("empty name: %w", ErrBadRoute))
	}
	if _, err := rt.Selector.Compile(); err != nil {
		return fail(err)
	}
	var err error
	if rt.Strategy, err = ParseStrategy(s.Strategy); err != nil {
		return fail(err)
	}
	var fs []filter.Filter
	if s.Where != nil {
		f, err := filter.Compile(*s.Where)
		if err != nil {
			return fail(fmt.Errorf("where: %w", err))
		}
		fs = append(fs, f)
	}
	if len(s.Deny) > 0 {
		f, err := filter.Deny(s.Deny...)
		if err != nil {
			return fail(err)
		}
		fs = append(fs, f)
	}
	if len(fs) > 0 {
		rt.Filter = filter.All(fs...)
	}
	if s.Redact != nil {
		if rt.Redact, err = filter.NewRedactor(*s.Redact); err != nil {
			return fail(err)
		}
	}
	if len(s.Targets) == 0 {
		return fail(fmt.Errorf("no targets: %w", ErrBadRoute))
	}
	for _, name := range s.Targets {
		t, err := resolve(name)
		if err != nil {
			return fail(fmt.Errorf("target %q: %w", name, err))
		}
		rt.Targets = append(rt.Targets, t)
	}
	return rt, nil
}
