package route

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/semprop/semprop/event"
)

// TestChurnMatchesModel adds, replaces and removes routes at random —
// through level merges and compactions — and checks after every change
// that the table selects exactly what a plain list of the live routes
// selects, and that a table taken earlier still
// selects what it selected then.
func TestChurnMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	types := []string{"fs.>", "fs.write", "fs.*", "app.a.*", "app.>", "app.b.c", ">", "app.*.c"}
	evTypes := []string{"fs.write", "fs.create", "app.a.x", "app.b.c", "app.q.c", "other"}
	type live struct {
		name string
		sel  Selector
	}
	var model []live // insertion order; a replacement moves to the end
	r := New[string](Options[string]{})
	want := func(ev *event.Event) []string {
		var out []string
		for _, l := range model {
			cs, err := l.sel.Compile()
			if err != nil {
				t.Fatal(err)
			}
			if cs.Match(ev) {
				out = append(out, l.name)
			}
		}
		slices.Sort(out)
		return out
	}
	got := func(tbl *Table[string], ev *event.Event) []string {
		var out []string
		tbl.Match(ev, func(name string) { out = append(out, name) })
		slices.Sort(out) // the order is insertion order except for indexed directories (see Table.Route)
		return out
	}
	type snap struct {
		tbl  *Table[string]
		want map[string][]string
	}
	var snaps []snap
	for step := range 3000 {
		name := fmt.Sprintf("r%d", rng.IntN(400))
		i := slices.IndexFunc(model, func(l live) bool { return l.name == name })
		if rng.IntN(3) == 0 {
			n := r.Remove(name)
			if (i >= 0) != (n == 1) {
				t.Fatalf("step %d: remove %s = %d, in model %v", step, name, n, i >= 0)
			}
			if i >= 0 {
				model = slices.Delete(model, i, i+1)
			}
		} else {
			sel := Selector{Type: types[rng.IntN(len(types))]}
			if rng.IntN(2) == 0 {
				sel.Path = fmt.Sprintf("/d%d/**", rng.IntN(3))
			}
			if err := r.Add(Route[string]{Name: name, Selector: sel, Targets: []string{name}}); err != nil {
				t.Fatal(err)
			}
			if i >= 0 {
				model = slices.Delete(model, i, i+1)
			}
			model = append(model, live{name, sel})
		}
		tbl := r.Table()
		if tbl.Len() != len(model) {
			t.Fatalf("step %d: Len = %d, model %d", step, tbl.Len(), len(model))
		}
		if step%50 == 0 {
			s := snap{tbl: tbl, want: map[string][]string{}}
			for _, typ := range evTypes {
				for d := range 3 {
					ev := &event.Event{Type: typ, Subject: fmt.Sprintf("/d%d/f", d)}
					s.want[typ+ev.Subject] = want(ev)
				}
			}
			snaps = append(snaps, s)
		}
		ev := &event.Event{Type: evTypes[rng.IntN(len(evTypes))], Subject: fmt.Sprintf("/d%d/f", rng.IntN(3))}
		if g, w := got(tbl, ev), want(ev); !slices.Equal(g, w) {
			t.Fatalf("step %d: %s %s: table %v, model %v", step, ev.Type, ev.Subject, g, w)
		}
	}
	for k, s := range snaps {
		for _, typ := range evTypes {
			for d := range 3 {
				ev := &event.Event{Type: typ, Subject: fmt.Sprintf("/d%d/f", d)}
				if g := got(s.tbl, ev); !slices.Equal(g, s.want[typ+ev.Subject]) {
					t.Fatalf("snapshot %d (version %d): %s %s: %v, then %v", k, s.tbl.Version(), typ, ev.Subject, g, s.want[typ+ev.Subject])
				}
			}
		}
	}
	if n := len(r.Table().levels); n > 20 {
		t.Errorf("%d levels for %d routes", n, len(model))
	}
}
