package propagate

import (
	"testing"

	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/route"
)

// TestAddRoutesInvalidReplacementKeepsOld: replacing a route with an
// invalid one fails and leaves the old route in place, in one table swap.
func TestAddRoutesInvalidReplacementKeepsOld(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	for _, n := range []string{"w1", "w2"} {
		if _, err := e.m.Subscribe(SubscribeOptions{Name: n, RoutedOnly: true}); err != nil {
			t.Fatal(err)
		}
	}
	good := route.Spec{Name: "r1", Type: "job.*", Targets: []string{"w1", "w2"}, Strategy: "weighted", Weights: []int{1, 2}}
	if err := e.m.AddRoutes(good); err != nil {
		t.Fatal(err)
	}
	before := e.m.router.Stats().Version
	bad := good
	bad.Weights = []int{1, -1}
	if err := e.m.AddRoutes(bad); err == nil {
		t.Fatal("AddRoutes(negative weight) = nil, want an error")
	}
	found := false
	for _, ri := range e.m.Routes() {
		if ri.Name == "r1" {
			found = true
		}
	}
	if !found {
		t.Fatalf("route r1 is gone after an invalid replacement; routes: %+v", e.m.Routes())
	}
	if v := e.m.router.Stats().Version; v != before {
		t.Errorf("table version %d after a refused replacement, want %d (unchanged)", v, before)
	}
	// A valid replacement is one swap.
	good.Weights = []int{3, 1}
	if err := e.m.AddRoutes(good); err != nil {
		t.Fatal(err)
	}
	if v := e.m.router.Stats().Version; v != before+1 {
		t.Errorf("table version %d after a replacement, want %d (one swap)", v, before+1)
	}
}
