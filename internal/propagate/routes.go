package propagate

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/semprop/semprop/internal/route"
)

// ErrNoSubscription is returned when a route names a subscription that is
// not open.
var ErrNoSubscription = errors.New("propagate: no open subscription of that name")

// AddRoutes adds (or, by name, replaces) dynamic routes. A route's targets
// are names of open subscriptions (SubscribeOptions.Name); with a strategy
// other than broadcast they form a group: round-robin, weighted, key-hash
// by subject (every event of one file to one member, in order) or
// failover. A route without targets is the route of the group of the same
// name (SubscribeOptions.Group): its targets are the group's live members,
// whatever joins or leaves, and its strategy defaults to round-robin
// (broadcast, if asked, gives every member every event). All routes are validated before any takes
// effect, and the routing table is swapped atomically: publishers never
// wait, and no event is routed by a half-updated table. Names starting
// with "sub-" are reserved for subscriptions' own routes.
func (m *Manager) AddRoutes(specs ...route.Spec) error {
	m.subMu.Lock()
	defer m.subMu.Unlock()
	routes := make([]route.Route[*Subscription], 0, len(specs))
	var groups []route.Spec
	for _, sp := range specs {
		if strings.HasPrefix(sp.Name, "sub-") {
			return fmt.Errorf("route %q: names starting with sub- are reserved: %w", sp.Name, route.ErrBadRoute)
		}
		if len(sp.Targets) == 0 && sp.Name != "" {
			if sp.Strategy == "" {
				sp.Strategy = route.RoundRobin.String() // a group shares; broadcast only when asked
			}
			check := sp
			check.Targets = []string{"member"}
			check.Weights = nil
			if _, err := route.FromSpec(check, func(string) (*Subscription, error) { return nil, nil }); err != nil {
				return err
			}
			if sp.Weights != nil {
				return fmt.Errorf("route %q: a group's weights are its members' (weight= on their streams): %w", sp.Name, route.ErrBadRoute)
			}
			groups = append(groups, sp)
			continue
		}
		if g := m.groups[sp.Name]; g != nil {
			return fmt.Errorf("route %q: it is a group's route and takes no targets: %w", sp.Name, ErrGroupConflict)
		}
		rt, err := route.FromSpec(sp, func(name string) (*Subscription, error) {
			s, ok := m.named[name]
			if !ok {
				return nil, fmt.Errorf("%w: %q", ErrNoSubscription, name)
			}
			return s, nil
		})
		if err != nil {
			return err
		}
		routes = append(routes, rt)
	}
	for _, sp := range groups {
		if m.groups[sp.Name] == nil {
			for _, rt := range routes {
				if rt.Name == sp.Name {
					return fmt.Errorf("route %q: given twice: %w", sp.Name, route.ErrConflict)
				}
			}
			for _, ri := range m.router.Routes() {
				if ri.Name == sp.Name {
					return fmt.Errorf("route %q: a route of that name has explicit targets: %w", sp.Name, ErrGroupConflict)
				}
			}
		}
	}
	// Router.Add replaces routes of the same names and validates all of
	// them before it publishes one new table: an invalid replacement
	// leaves the old route in place.
	if err := m.router.Add(routes...); err != nil {
		return err
	}
	for _, sp := range groups {
		if err := m.addGroupRouteLocked(sp); err != nil {
			return err // validated above: not expected
		}
	}
	return nil
}

// RemoveRoutes removes dynamic routes by name and reports how many existed.
// Removing a group's route leaves its members connected with nothing to
// receive until a route of that name is added again.
func (m *Manager) RemoveRoutes(names ...string) int {
	var keep []string
	m.subMu.Lock()
	defer m.subMu.Unlock()
	n := 0
	for _, name := range names {
		if strings.HasPrefix(name, "sub-") {
			continue
		}
		if g := m.groups[name]; g != nil {
			if g.spec != nil {
				n++
			}
			g.spec, g.explicit = nil, false
			_ = m.installLocked(name, g)
			if len(g.members) == 0 {
				delete(m.groups, name)
			}
			continue
		}
		keep = append(keep, name)
	}
	return n + m.router.Remove(keep...)
}

// Routes lists the routing table: dynamic routes (Kind "route"), groups'
// routes with their live members ("group"), and the subscriptions' own
// routes, named sub-N ("subscription"). A group whose route was removed
// is listed with its members and an empty strategy, and a subscription
// that only receives what routes send it (RoutedOnly, not in a group) as
// a "subscription" with its id, its name as member, and no strategy.
func (m *Manager) Routes() []route.RouteInfo {
	m.subMu.Lock()
	defer m.subMu.Unlock()
	out := m.router.Routes()
	listed := make(map[string]bool)
	for i := range out {
		switch {
		case m.groups[out[i].Name] != nil:
			out[i].Kind = "group"
			listed[out[i].Name] = true
		case strings.HasPrefix(out[i].Name, "sub-"):
			out[i].Kind = "subscription"
		default:
			out[i].Kind = "route"
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m.groups)) {
		g := m.groups[name]
		if listed[name] {
			continue
		}
		ri := route.RouteInfo{Name: name, Kind: "group", Targets: len(g.members)}
		for _, s := range g.members {
			ri.Members = append(ri.Members, s.label())
		}
		out = append(out, ri)
	}
	var routed []*Subscription
	for s := range m.subs {
		if s.routed && s.group == "" {
			routed = append(routed, s)
		}
	}
	slices.SortFunc(routed, func(a, b *Subscription) int { return cmp.Compare(a.num, b.num) })
	for _, s := range routed {
		out = append(out, route.RouteInfo{Name: s.id, Kind: "subscription", Targets: 1, Members: []string{s.label()}})
	}
	return out
}
