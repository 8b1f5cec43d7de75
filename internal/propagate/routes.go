package propagate

import (
	"errors"
	"fmt"
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
// failover. All routes are validated before any takes effect, and the
// routing table is swapped atomically: publishers never wait, and no event
// is routed by a half-updated table. Names starting with "sub-" are
// reserved for subscriptions' own routes.
func (m *Manager) AddRoutes(specs ...route.Spec) error {
	m.subMu.Lock()
	defer m.subMu.Unlock()
	routes := make([]route.Route[*Subscription], 0, len(specs))
	for _, sp := range specs {
		if strings.HasPrefix(sp.Name, "sub-") {
			return fmt.Errorf("route %q: names starting with sub- are reserved: %w", sp.Name, route.ErrBadRoute)
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
	// Router.Add replaces routes of the same names and validates all of
	// them before it publishes one new table: an invalid replacement
	// leaves the old route in place.
	return m.router.Add(routes...)
}

// RemoveRoutes removes dynamic routes by name and reports how many existed.
func (m *Manager) RemoveRoutes(names ...string) int {
	var keep []string
	for _, n := range names {
		if !strings.HasPrefix(n, "sub-") {
			keep = append(keep, n)
		}
	}
	m.subMu.Lock()
	defer m.subMu.Unlock()
	return m.router.Remove(keep...)
}

// Routes lists the routing table: dynamic routes and the subscriptions'
// own routes (named sub-N).
func (m *Manager) Routes() []route.RouteInfo { return m.router.Routes() }
