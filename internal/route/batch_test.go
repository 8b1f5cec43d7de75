package route

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/semprop/semprop/event"
)

// TestRouteBatchAgreesWithRoute routes batches of events whose types come
// in runs and alone (the case the batch lookup shortcuts) and checks that
// every target gets what routing the events one by one gives it, in the
// same order, and that the delivered counter counts each delivery once.
func TestRouteBatchAgreesWithRoute(t *testing.T) {
	types := []string{"fs.write", "fs.create", "fs.*", "*.write", ">", "vector.insert", "fs.>"}
	var routes []Route[int]
	for i := range 40 {
		sel := Selector{Type: types[i%len(types)]}
		if i%3 == 0 {
			sel.Path = "/data/team1/**"
		}
		if i%5 == 0 {
			sel.Filter = "size > 10"
		}
		routes = append(routes, Route[int]{Name: fmt.Sprint(i), Selector: sel, Targets: []int{i, 100 + i}})
	}
	routes = append(routes, Route[int]{Name: "rr", Selector: Selector{Type: "fs.write"}, Targets: []int{200, 201, 202}, Strategy: RoundRobin})
	evTypes := []string{"fs.write", "fs.write", "fs.write", "fs.create", "fs.write", "vector.insert", "vector.insert", "a.b", "fs.write"}
	subjects := []string{"/data/team1/a.md", "/data/team2/b", "/data/team1/x/y"}
	var evs []*event.Event
	for i, typ := range evTypes {
		for k, subj := range subjects {
			ev := &event.Event{Type: typ, Subject: subj, Seq: uint64(len(evs) + 1)}
			ev.Context.SetSize(int64((i + k) * 7 % 20))
			evs = append(evs, ev)
		}
	}
	route := func(batch bool) (map[int][]uint64, int, uint64) {
		r := New[int](Options[int]{})
		if err := r.Add(routes...); err != nil {
			t.Fatal(err)
		}
		got := map[int][]uint64{}
		rec := func(tgt int, ev *event.Event, tag string) error {
			if tag != "arg" {
				t.Fatalf("deliver got arg %q, want %q", tag, "arg")
			}
			got[tgt] = append(got[tgt], ev.Seq)
			return nil
		}
		n := 0
		if batch {
			n = RouteBatchArg(r.Table(), evs, "arg", rec)
		} else {
			for _, ev := range evs {
				n += RouteArg(r.Table(), ev, "arg", rec)
			}
		}
		return got, n, r.Stats().Delivered
	}
	want, wantN, wantStat := route(false)
	got, n, stat := route(true)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RouteBatchArg deliveries per target (-one by one +batch):\n%s", diff)
	}
	if n != wantN || stat != uint64(wantN) || wantStat != uint64(wantN) {
		t.Errorf("RouteBatchArg = %d deliveries, Delivered %d; one by one %d, Delivered %d", n, stat, wantN, wantStat)
	}
	if wantN == 0 || len(want) < 10 {
		t.Fatalf("the test routes too little: %d deliveries to %d targets", wantN, len(want))
	}
	for tgt, seqs := range got {
		if !slices.IsSorted(seqs) {
			t.Errorf("target %d got seqs %v, not in batch order", tgt, seqs)
		}
	}
}

func TestRouteBatchZeroAllocs(t *testing.T) {
	r := New[int](Options[int]{})
	if err := r.Add(
		Route[int]{Name: "a", Selector: Selector{Type: "fs.>"}, Targets: []int{1}},
		Route[int]{Name: "b", Selector: Selector{Type: "fs.write", Path: "/data/**"}, Targets: []int{2, 3}},
	); err != nil {
		t.Fatal(err)
	}
	evs := make([]*event.Event, 100)
	for i := range evs {
		evs[i] = &event.Event{Type: "fs.write", Subject: "/data/x"}
		if i%10 == 9 {
			evs[i] = &event.Event{Type: "fs.create", Subject: "/data/x"}
		}
	}
	var sum int64
	add := func(tgt int, _ *event.Event, at int64) error { sum += at + int64(tgt); return nil }
	if n := RouteBatchArg(r.Table(), evs, int64(1), add); n != 90*3+10 {
		t.Fatalf("RouteBatchArg delivered %d, want %d", n, 90*3+10)
	}
	if a := testing.AllocsPerRun(100, func() { RouteBatchArg(r.Table(), evs, int64(1), add) }); a != 0 {
		t.Errorf("RouteBatchArg allocs = %v, want 0", a)
	}
}
