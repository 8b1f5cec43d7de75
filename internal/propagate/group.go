package propagate

import (
	"errors"
	"fmt"
	"strings"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/route"
)

// Groups
//
// A group is a load-balanced set of live subscriptions (its members,
// SubscribeOptions.Group): the targets of the dynamic route of the same
// name. Each event the route selects goes to exactly one live member,
// chosen by the route's strategy (round-robin by default; weighted by the
// members' SubscribeOptions.Weight; key-hash on the subject, so that one
// file's events reach one member, in order, while the membership is
// stable; failover in join order). A member whose queue is full, or whose
// Matcher refuses the event, is passed over for the next one.
//
// The route is the one AddRoutes gave with that name and no targets, or,
// when there is none, one made from the selector of the member that
// created the group; the latter disappears with the last member.
//
// When a member leaves (Subscription.Leave), it is taken out of the route
// at once, and the events queued for it but not taken, and those its
// subscriber took but did not send (given to Leave), are routed again to
// the live members: nothing the member did not pass on is lost while
// another member is live. Re-routed events reach their new member after
// events routed to it meanwhile: order per subject holds only while the
// membership is stable. Events the departed subscriber did pass on (e.g.
// written to its connection) are its own: live subscriptions are
// at-most-once; durable consumers are the at-least-once path.

// ErrGroupConflict is returned when a group would take the name of a
// route with explicit targets, or a member's selector differs from its
// group's route.
var ErrGroupConflict = errors.New("propagate: group conflict")

// errPassOver makes the router try the next member of a group: the member
// cannot take the event (full queue, not visible to it).
var errPassOver = errors.New("propagate: member passes")

// group is one group's route and members; guarded by Manager.subMu.
type group struct {
	spec     *route.Spec     // the route without targets; nil: none (members get nothing)
	explicit bool            // spec came from AddRoutes: it outlives the last member
	members  []*Subscription // in join order: the failover order
}

// joinLocked adds s to its group, creating the group (with a route from
// sel) when it does not exist. It needs m.subMu.
func (m *Manager) joinLocked(s *Subscription, sel route.Selector) error {
	name := s.group
	if strings.HasPrefix(name, "sub-") {
		return fmt.Errorf("group %q: names starting with sub- are reserved: %w", name, route.ErrBadRoute)
	}
	g := m.groups[name]
	if g == nil {
		for _, ri := range m.router.Routes() {
			if ri.Name == name {
				return fmt.Errorf("group %q: a route of that name has explicit targets: %w", name, ErrGroupConflict)
			}
		}
		g = &group{spec: &route.Spec{Name: name, Type: sel.Type, Path: sel.Path, Filter: sel.Filter, Strategy: route.RoundRobin.String()}}
	} else if sel != (route.Selector{}) && g.spec != nil && sel != (route.Selector{Type: g.spec.Type, Path: g.spec.Path, Filter: g.spec.Filter}) {
		return fmt.Errorf("group %q selects type %q path %q filter %q; a member may only repeat it: %w",
			name, g.spec.Type, g.spec.Path, g.spec.Filter, ErrGroupConflict)
	}
	g.members = append(g.members, s)
	if err := m.installLocked(name, g); err != nil {
		g.members = g.members[:len(g.members)-1]
		return err
	}
	m.groups[name] = g
	return nil
}

// installLocked publishes g's route with its current members (or removes
// it when there is no member or no route). It needs m.subMu.
func (m *Manager) installLocked(name string, g *group) error {
	if g.spec == nil || len(g.members) == 0 {
		m.router.Remove(name)
		return nil
	}
	sp := *g.spec
	sp.Targets = make([]string, len(g.members))
	byID := make(map[string]*Subscription, len(g.members))
	for i, s := range g.members {
		sp.Targets[i] = s.id
		byID[s.id] = s
	}
	if sp.Strategy == route.Weighted.String() {
		sp.Weights = make([]int, len(g.members))
		for i, s := range g.members {
			sp.Weights[i] = s.weight
		}
	}
	rt, err := route.FromSpec(sp, func(id string) (*Subscription, error) { return byID[id], nil })
	if err != nil {
		return err
	}
	return m.router.Add(rt)
}

// Leave takes a group member out of its group and routes again, to the
// live members, first unsent (events its subscriber took with Next and
// did not pass on, oldest first) and then what is still queued for it;
// then it closes the subscription. It returns how many events found a new
// member. Only the goroutine that calls Next may call Leave. For a
// subscription that is not in a group, Leave is Close and returns 0.
func (s *Subscription) Leave(unsent []*event.Event) int {
	if s.group == "" {
		s.Close()
		return 0
	}
	m := s.m
	// No delivery runs while the member leaves: every event is either
	// routed by a table without it or found in its queue here.
	m.deliverMu.Lock()
	s.Close()
	t := m.router.Table()
	var wake []*ring
	n := 0
	reroute := func(ev *event.Event) {
		n += route.RouteVia(t, s.group, ev, &wake, offerTo)
	}
	for _, ev := range unsent {
		reroute(ev)
	}
	for {
		ev, ok := s.TryNext()
		if !ok {
			break
		}
		reroute(ev)
	}
	m.deliverMu.Unlock()
	for _, r := range wake {
		r.signal()
	}
	return n
}

// leaveLocked takes s out of its group's route. It needs m.subMu.
func (m *Manager) leaveLocked(s *Subscription) {
	g := m.groups[s.group]
	if g == nil {
		return
	}
	for i, x := range g.members {
		if x == s {
			g.members = append(g.members[:i:i], g.members[i+1:]...)
			break
		}
	}
	if err := m.installLocked(s.group, g); err != nil {
		// The route was valid with more members; fewer cannot make it
		// invalid. Remove it rather than route to a departed member.
		m.log.Error("group route", "group", s.group, "err", err)
		m.router.Remove(s.group)
	}
	if len(g.members) == 0 && !g.explicit {
		delete(m.groups, s.group)
	}
}

// addGroupRouteLocked sets the route of group sp.Name (a validated spec
// without targets). It needs m.subMu.
func (m *Manager) addGroupRouteLocked(sp route.Spec) error {
	g := m.groups[sp.Name]
	if g == nil {
		g = &group{}
		m.groups[sp.Name] = g
	}
	old, oldExplicit := g.spec, g.explicit
	g.spec, g.explicit = &sp, true
	if err := m.installLocked(sp.Name, g); err != nil {
		g.spec, g.explicit = old, oldExplicit
		return err
	}
	return nil
}

// label names a subscription in route listings: its name, or its id.
func (s *Subscription) label() string {
	if s.name != "" {
		return s.name
	}
	return s.id
}

// groupWeight is SubscribeOptions.Weight with its default.
func groupWeight(w int) int {
	if w <= 0 {
		return 1
	}
	return w
}
