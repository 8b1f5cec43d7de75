package propagate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/route"
)

func joinN(t testing.TB, m *Manager, group string, n int, opts SubscribeOptions) []*Subscription {
	t.Helper()
	subs := make([]*Subscription, n)
	for i := range subs {
		o := opts
		o.Group = group
		o.Name = fmt.Sprintf("%s-%d", group, i)
		s, err := m.Subscribe(o)
		if err != nil {
			t.Fatal(err)
		}
		subs[i] = s
		t.Cleanup(s.Close)
	}
	return subs
}

func drain(s *Subscription) []*event.Event {
	var out []*event.Event
	for {
		ev, ok := s.TryNext()
		if !ok {
			return out
		}
		out = append(out, ev)
	}
}

// TestGroupRoundRobinAndLeave: members of a group share its events one
// each, in turn; a member that leaves hands back what it had not passed
// on, and its share moves to the others.
func TestGroupRoundRobinAndLeave(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	subs := joinN(t, e.m, "g", 3, SubscribeOptions{Selector: route.Selector{Type: "job.>"}})
	publishN(t, e.m, "job.run", 30)
	publishN(t, e.m, "other", 5)
	var got [3][]*event.Event
	for i, s := range subs {
		got[i] = drain(s)
		if len(got[i]) != 10 {
			t.Errorf("member %d got %d events, want 10", i, len(got[i]))
		}
	}
	// Member 2 took two events and passed on none of them; then more
	// arrive. It leaves: all of that goes to members 0 and 1.
	publishN(t, e.m, "job.run", 6) // 2 each
	taken := drain(subs[2])
	if len(taken) != 2 {
		t.Fatalf("member 2 has %d queued, want 2", len(taken))
	}
	publishN(t, e.m, "job.run", 3) // 1 queued for member 2
	if n := subs[2].Leave(taken); n != 3 {
		t.Errorf("Leave rerouted %d events, want 3", n)
	}
	publishN(t, e.m, "job.run", 10)
	a, b := drain(subs[0]), drain(subs[1])
	if len(a)+len(b) != 2+2+3+2+10 {
		t.Errorf("members 0 and 1 got %d+%d events after the leave, want %d", len(a), len(b), 19)
	}
	seen := map[uint64]bool{}
	for _, ev := range slices.Concat(got[0], got[1], got[2], a, b) {
		if seen[ev.Seq] {
			t.Errorf("seq %d delivered twice", ev.Seq)
		}
		seen[ev.Seq] = true
	}
	if len(seen) != 30+6+3+10 {
		t.Errorf("%d distinct events delivered, want %d", len(seen), 49)
	}
	if _, err := subs[2].Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Leave = %v, want ErrClosed", err)
	}
}

// TestGroupKeyHash: with a key-hash route every subject stays on one
// member.
func TestGroupKeyHash(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	if err := e.m.AddRoutes(route.Spec{Name: "kh", Type: "job.*", Strategy: "key-hash"}); err != nil {
		t.Fatal(err)
	}
	subs := joinN(t, e.m, "kh", 3, SubscribeOptions{Queue: 4096})
	for i := range 600 {
		if _, err := e.m.Publish(context.Background(), &event.Event{Type: "job.run", Subject: fmt.Sprintf("/f/%d", i%20)}); err != nil {
			t.Fatal(err)
		}
	}
	owner := map[string]int{}
	total := 0
	for i, s := range subs {
		for _, ev := range drain(s) {
			total++
			if o, ok := owner[ev.Subject]; ok && o != i {
				t.Errorf("subject %s reached members %d and %d", ev.Subject, o, i)
			}
			owner[ev.Subject] = i
		}
	}
	if total != 600 {
		t.Errorf("%d events delivered, want 600", total)
	}
}

// TestGroupRoutes: the listing shows the group with its members and
// strategy; a member whose selector differs from the group's is refused;
// a route with targets cannot take a group's name.
func TestGroupRoutes(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	joinN(t, e.m, "g", 2, SubscribeOptions{Selector: route.Selector{Type: "a.*"}})
	var gi *route.RouteInfo
	for _, ri := range e.m.Routes() {
		if ri.Name == "g" {
			gi = &ri
		}
	}
	if gi == nil || gi.Kind != "group" || gi.Strategy != "round-robin" || !slices.Equal(gi.Members, []string{"g-0", "g-1"}) {
		t.Fatalf("route g = %+v, want a round-robin group with members g-0, g-1", gi)
	}
	if _, err := e.m.Subscribe(SubscribeOptions{Group: "g", Selector: route.Selector{Type: "b.*"}}); !errors.Is(err, ErrGroupConflict) {
		t.Errorf("joining with another selector = %v, want ErrGroupConflict", err)
	}
	if err := e.m.AddRoutes(route.Spec{Name: "g", Targets: []string{"g-0"}}); !errors.Is(err, ErrGroupConflict) {
		t.Errorf("a route with targets named like a group = %v, want ErrGroupConflict", err)
	}
	if err := e.m.AddRoutes(route.Spec{Name: "g", Type: "a.*", Strategy: "failover"}); err != nil {
		t.Fatal(err)
	}
	for _, ri := range e.m.Routes() {
		if ri.Name == "g" && ri.Strategy != "failover" {
			t.Errorf("group g strategy %q after AddRoutes, want failover", ri.Strategy)
		}
	}
}

// BenchmarkGroupFailover measures a member's departure: from the moment it
// leaves (disconnect detected) until the group's route no longer names it
// and its queued events are routed to the live members.
func BenchmarkGroupFailover(b *testing.B) {
	e := newEnv(b, journal.FsyncNever)
	keep := joinN(b, e.m, "g", 2, SubscribeOptions{Queue: 1 << 16})
	ev := &event.Event{Type: "job.run", Subject: "/f"}
	e.m.prepare([]*event.Event{ev}, nanotime())
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		s, err := e.m.Subscribe(SubscribeOptions{Group: "g", Queue: 64})
		if err != nil {
			b.Fatal(err)
		}
		for range 16 {
			offer(s, ev, 0)
		}
		drain(keep[0])
		drain(keep[1])
		b.StartTimer()
		s.Leave(nil)
	}
}

// TestRoutesListNamedSubscriptions: a routed-only named subscription is
// listed even before a route names it.
func TestRoutesListNamedSubscriptions(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	s, err := e.m.Subscribe(SubscribeOptions{Name: "w1", RoutedOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	found := false
	for _, ri := range e.m.Routes() {
		if ri.Kind == "subscription" && slices.Equal(ri.Members, []string{"w1"}) {
			found = true
		}
	}
	if !found {
		t.Errorf("Routes() = %+v, want the subscription w1", e.m.Routes())
	}
}

// TestGroupRouteDefaultsToRoundRobin: a group's route without a strategy
// shares the events; it does not broadcast them.
func TestGroupRouteDefaultsToRoundRobin(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	if err := e.m.AddRoutes(route.Spec{Name: "g", Type: "job.*"}); err != nil {
		t.Fatal(err)
	}
	subs := joinN(t, e.m, "g", 2, SubscribeOptions{})
	publishN(t, e.m, "job.run", 10)
	if a, b := len(drain(subs[0])), len(drain(subs[1])); a != 5 || b != 5 {
		t.Errorf("members got %d and %d events, want 5 each", a, b)
	}
}
