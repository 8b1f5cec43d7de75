package route

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/filter"
)

func ok[T comparable](T, *event.Event) error { return nil }

func TestReconfigureUnderLoad(t *testing.T) {
	const swaps = 1000
	r := New[int](Options[int]{})
	route := func(k int) Route[int] {
		return Route[int]{Name: "r", Selector: Selector{Type: "t.*"}, Targets: []int{2 * k, 2*k + 1}}
	}
	if err := r.Add(route(0)); err != nil {
		t.Fatal(err)
	}
	// want[v] is the sorted target set of table version v.
	var wantMu sync.Mutex
	want := map[uint64][]int{r.Table().Version(): {0, 1}}
	record := func(set []int) {
		wantMu.Lock()
		want[r.Table().Version()] = set
		wantMu.Unlock()
	}

	type obs struct {
		version uint64
		got     []int
	}
	var done atomic.Bool
	var wg sync.WaitGroup
	results := make([][]obs, 2)
	for p := range results {
		wg.Go(func() {
			ev := &event.Event{Type: "t.x"}
			var last uint64
			deadline := time.Now().Add(time.Minute)
			for i := 0; !done.Load() && i < 10_000_000 && time.Now().Before(deadline); i++ {
				tbl := r.Table()
				var got []int
				tbl.Route(ev, func(tgt int, _ *event.Event) error { got = append(got, tgt); return nil })
				if tbl.Version() < last {
					t.Errorf("publisher %d saw version %d after %d", p, tbl.Version(), last)
				}
				last = tbl.Version()
				slices.Sort(got)
				results[p] = append(results[p], obs{tbl.Version(), got})
			}
		})
	}
	for k := 1; k <= swaps; k++ {
		// Updates are serialised here, so the table after each call is the
		// one it published.
		if k%2 == 0 {
			if err := r.Add(route(k), Route[int]{Name: "extra", Selector: Selector{Type: "t.>"}, Targets: []int{-k}}); err != nil {
				t.Fatal(err)
			}
			record([]int{-k, 2 * k, 2*k + 1})
		} else {
			if n := r.Remove("extra"); k > 1 && n != 1 {
				t.Fatalf("Remove(extra) = %d, want 1", n)
			}
			if k > 1 {
				record([]int{2 * (k - 1), 2*(k-1) + 1})
			}
			if err := r.Add(route(k)); err != nil {
				t.Fatal(err)
			}
			record([]int{2 * k, 2*k + 1})
		}
		if k%100 == 0 {
			time.Sleep(time.Millisecond) // let publishers see intermediate tables
		}
	}
	done.Store(true)
	wg.Wait()

	seen := map[uint64]bool{}
	n := 0
	for _, rs := range results {
		for _, o := range rs {
			n++
			seen[o.version] = true
			if w, ok := want[o.version]; !ok || !slices.Equal(o.got, w) {
				t.Fatalf("event routed by table %d went to %v, want %v", o.version, o.got, w)
			}
		}
	}
	if len(seen) < 10 {
		t.Errorf("publishers saw only %d table versions; the test did not overlap swaps and publishing", len(seen))
	}
	t.Logf("%d events routed across %d of %d table versions", n, len(seen), len(want))
}

func TestDistribution(t *testing.T) {
	const events = 100_000
	for _, tc := range []struct {
		name     string
		strategy Strategy
		weights  []int
	}{
		{"round-robin", RoundRobin, nil},
		{"weighted", Weighted, []int{1, 2, 3, 4}},
		{"weighted-uneven", Weighted, []int{5, 95}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			targets := []int{0, 1, 2, 3}
			if len(tc.weights) == 2 {
				targets = targets[:2]
			}
			r := New[int](Options[int]{})
			if err := r.Add(Route[int]{Name: "g", Selector: Selector{Type: "job.>"},
				Targets: targets, Strategy: tc.strategy, Weights: tc.weights}); err != nil {
				t.Fatal(err)
			}
			counts := make([]atomic.Int64, len(targets))
			deliver := func(tgt int, _ *event.Event) error { counts[tgt].Add(1); return nil }
			var wg sync.WaitGroup
			for range 2 {
				wg.Go(func() {
					ev := &event.Event{Type: "job.run"}
					for range events / 2 {
						r.Route(ev, deliver)
					}
				})
			}
			wg.Wait()
			total := 0
			for _, w := range tc.weights {
				total += w
			}
			for i := range targets {
				ideal := float64(events) / float64(len(targets))
				if tc.weights != nil {
					ideal = float64(events) * float64(tc.weights[i]) / float64(total)
				}
				got := float64(counts[i].Load())
				if math.Abs(got-ideal) > 0.05*ideal {
					t.Errorf("target %d got %.0f events, want %.0f ± 5%%", i, got, ideal)
				}
			}
		})
	}
}

func TestKeyHashOrder(t *testing.T) {
	const events, subjects, members = 100_000, 1000, 4
	r := New[int](Options[int]{})
	if err := r.Add(Route[int]{Name: "g", Selector: Selector{Type: "fs.>"},
		Targets: []int{0, 1, 2, 3}, Strategy: KeyHash}); err != nil {
		t.Fatal(err)
	}
	member := map[string]int{}
	last := map[string]int{}
	counts := make([]int, members)
	var cur string
	var seq int
	deliver := func(tgt int, ev *event.Event) error {
		if m, ok := member[ev.Subject]; ok && m != tgt {
			t.Fatalf("subject %s went to member %d, earlier to %d", ev.Subject, tgt, m)
		}
		member[ev.Subject] = tgt
		if seq <= last[cur] && last[cur] != 0 {
			t.Fatalf("subject %s: event %d after %d", cur, seq, last[cur])
		}
		last[cur] = seq
		counts[tgt]++
		return nil
	}
	evs := make([]*event.Event, subjects)
	for i := range evs {
		evs[i] = &event.Event{Type: "fs.write", Subject: fmt.Sprintf("/data/dir%d/file%d.txt", i%37, i)}
	}
	for i := range events {
		ev := evs[(i*7919)%subjects]
		cur, seq = ev.Subject, i+1
		r.Route(ev, deliver)
	}
	for m, c := range counts {
		if ideal := events / members; math.Abs(float64(c-ideal)) > 0.15*float64(ideal) {
			t.Errorf("member %d got %d events, want about %d", m, c, ideal)
		}
	}
	// The mapping is stable across tables (and restarts): rebuild and check.
	r2 := New[int](Options[int]{})
	if err := r2.Add(Route[int]{Name: "g", Selector: Selector{Type: "fs.>"}, Targets: []int{0, 1, 2, 3}, Strategy: KeyHash}); err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs[:100] {
		r2.Route(ev, func(tgt int, ev *event.Event) error {
			if tgt != member[ev.Subject] {
				t.Errorf("subject %s maps to %d in a new router, %d before", ev.Subject, tgt, member[ev.Subject])
			}
			return nil
		})
	}
}

var errFull = errors.New("target full")

func TestFailover(t *testing.T) {
	const timeout = 50 * time.Millisecond
	var openedAt, closedAt atomic.Int64
	r := New[string](Options[string]{
		Breaker: BreakerSettings{Failures: 3, Timeout: timeout},
		OnBreakerChange: func(tgt string, from, to gobreaker.State) {
			if tgt != "a" {
				return
			}
			switch to {
			case gobreaker.StateOpen:
				openedAt.CompareAndSwap(0, time.Now().UnixNano())
			case gobreaker.StateClosed:
				closedAt.Store(time.Now().UnixNano())
			}
		},
	})
	if err := r.Add(Route[string]{Name: "f", Selector: Selector{Type: "fs.>"},
		Targets: []string{"a", "b"}, Strategy: Failover, Breakers: true}); err != nil {
		t.Fatal(err)
	}
	var failing atomic.Bool
	var lastA, delivered, afterRecovery atomic.Int64
	deliver := func(tgt string, _ *event.Event) error {
		if tgt == "a" {
			lastA.Store(time.Now().UnixNano())
			if failing.Load() {
				return errFull
			}
			if closedAt.Load() != 0 {
				afterRecovery.Add(1)
			}
		}
		delivered.Add(1)
		return nil
	}
	ev := &event.Event{Type: "fs.write", Subject: "/x"}
	published := 0
	publish := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); {
			if r.Route(ev, deliver) != 1 {
				t.Fatalf("event %d was not delivered to any target", published)
			}
			published++
		}
	}
	publish(5 * time.Millisecond)
	failing.Store(true)
	publish(timeout / 2)
	if openedAt.Load() == 0 {
		t.Fatalf("breaker of a did not open")
	}
	if late := time.Duration(lastA.Load() - openedAt.Load()); late > time.Millisecond {
		t.Errorf("a received traffic %v after its breaker opened, want <= 1ms", late)
	}
	failing.Store(false)
	publish(timeout + 20*time.Millisecond)
	if closedAt.Load() == 0 || afterRecovery.Load() == 0 {
		t.Errorf("a did not get traffic back after recovery (closed at %d, %d events)", closedAt.Load(), afterRecovery.Load())
	}
	if got := delivered.Load(); got != int64(published) {
		t.Errorf("delivered %d events, published %d", got, published)
	}
	st := r.Stats()
	if st.Failovers == 0 || st.Failed == 0 {
		t.Errorf("Stats() = %+v, want failovers and failures counted", st)
	}
}

func TestFailoverInGroup(t *testing.T) {
	r := New[int](Options[int]{Breaker: BreakerSettings{Failures: 2, Timeout: time.Hour}})
	if err := r.Add(Route[int]{Name: "g", Selector: Selector{Type: "x"},
		Targets: []int{0, 1, 2}, Strategy: RoundRobin, Breakers: true}); err != nil {
		t.Fatal(err)
	}
	counts := make([]int, 3)
	deliver := func(tgt int, _ *event.Event) error {
		if tgt == 1 {
			return errFull
		}
		counts[tgt]++
		return nil
	}
	ev := &event.Event{Type: "x"}
	for i := range 3000 {
		if r.Route(ev, deliver) != 1 {
			t.Fatalf("event %d not delivered", i)
		}
	}
	if counts[0]+counts[2] != 3000 || counts[0] < 1400 || counts[2] < 1400 {
		t.Errorf("counts = %v, want member 1's share spread over 0 and 2", counts)
	}
	if st := r.Stats(); st.Failed != 2 {
		t.Errorf("Failed = %d, want 2 (the breaker opens after 2 failures, then skips the member)", st.Failed)
	}
}

func TestRouteValidation(t *testing.T) {
	r := New[int](Options[int]{})
	for _, tc := range []struct {
		rt   Route[int]
		want error
	}{
		{Route[int]{Selector: Selector{Type: "a"}, Targets: []int{1}}, ErrBadRoute},
		{Route[int]{Name: "n", Selector: Selector{Type: "a"}}, ErrBadRoute},
		{Route[int]{Name: "n", Selector: Selector{Type: "a"}, Targets: []int{1, 2}, Strategy: Weighted, Weights: []int{1}}, ErrBadRoute},
		{Route[int]{Name: "n", Selector: Selector{Type: "a"}, Targets: []int{1}, Strategy: Weighted, Weights: []int{0}}, ErrBadRoute},
		{Route[int]{Name: "n", Selector: Selector{Type: "a.>.b"}, Targets: []int{1}}, ErrBadSelector},
	} {
		if err := r.Add(tc.rt); !errors.Is(err, tc.want) {
			t.Errorf("Add(%+v) error = %v, want %v", tc.rt, err, tc.want)
		}
	}
	if err := r.Add(Route[int]{Name: "s", Selector: Selector{Type: "a"}, Targets: []int{1}}); err != nil {
		t.Fatal(err)
	}
	dup := Route[int]{Name: "d", Selector: Selector{Type: "b"}, Targets: []int{2}}
	if err := r.Add(dup, dup); !errors.Is(err, ErrConflict) {
		t.Errorf("Add(two routes of one name) error = %v, want ErrConflict", err)
	}
	if got := r.Table().Len(); got != 1 {
		t.Errorf("after failed updates the table has %d routes, want 1", got)
	}
}

func TestSecurityFiltersOnRoutes(t *testing.T) {
	red, err := filter.NewRedactor(filter.RedactSpec{Rules: []filter.RedactRule{{Field: "subject", Action: "mask", Segments: []int{1}}}})
	if err != nil {
		t.Fatal(err)
	}
	r := New[string](Options[string]{})
	if err := r.Add(
		Route[string]{Name: "guest", Selector: Selector{Type: "fs.>"}, Filter: filter.MustDeny("**/.ssh/**"), Redact: red, Targets: []string{"guest"}},
		Route[string]{Name: "admin", Selector: Selector{Type: "fs.>"}, Targets: []string{"admin"}},
	); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range []string{"/home/alice/.ssh/id_rsa", "/home/alice/notes.md"} {
		ev := &event.Event{Type: "fs.write", Subject: s}
		r.Route(ev, func(tgt string, out *event.Event) error { got[tgt+" "+s] = out.Subject; return nil })
		if ev.Subject != s {
			t.Fatalf("routing modified the event's subject to %q", ev.Subject)
		}
	}
	want := map[string]string{
		"admin /home/alice/.ssh/id_rsa": "/home/alice/.ssh/id_rsa",
		"admin /home/alice/notes.md":    "/home/alice/notes.md",
		"guest /home/alice/notes.md":    "/home/***/notes.md",
	}
	if !maps_equal(got, want) {
		t.Errorf("deliveries = %v, want %v", got, want)
	}
}

func maps_equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestRouteZeroAllocs(t *testing.T) {
	r := New[int](Options[int]{Breaker: BreakerSettings{Failures: 5, Timeout: time.Second}})
	if err := r.Add(
		Route[int]{Name: "b", Selector: Selector{Type: "fs.>", Path: "/data/**/*.md", Filter: "size > 0"}, Targets: []int{1, 2}},
		Route[int]{Name: "rr", Selector: Selector{Type: "fs.*"}, Targets: []int{3, 4, 5}, Strategy: RoundRobin, Breakers: true},
		Route[int]{Name: "kh", Selector: Selector{Type: "*.write"}, Targets: []int{6, 7}, Strategy: KeyHash},
		Route[int]{Name: "w", Selector: Selector{Type: "fs.write"}, Targets: []int{8, 9}, Strategy: Weighted, Weights: []int{1, 3}},
	); err != nil {
		t.Fatal(err)
	}
	ev := &event.Event{Type: "fs.write", Subject: "/data/a/b.md"}
	ev.Context.SetSize(10)
	deliver := DeliverFunc[int](ok[int])
	if n := r.Route(ev, deliver); n != 5 {
		t.Fatalf("Route delivered %d, want 5", n)
	}
	if a := testing.AllocsPerRun(200, func() { r.Route(ev, deliver) }); a != 0 {
		t.Errorf("Route allocs = %v, want 0", a)
	}
	// RouteArg passes per-event state through without a closure.
	var sum int64
	add := func(tgt int, _ *event.Event, at int64) error { sum += at + int64(tgt); return nil }
	if n := RouteArg(r.Table(), ev, int64(1000), add); n != 5 || sum < 5000 {
		t.Fatalf("RouteArg delivered %d (sum %d), want 5", n, sum)
	}
	if a := testing.AllocsPerRun(200, func() { RouteArg(r.Table(), ev, int64(7), add) }); a != 0 {
		t.Errorf("RouteArg allocs = %v, want 0", a)
	}
}

// TestRouteAgreesWithSelectors checks the trie, the type cache and the
// directory index against matching every route's selector one by one.
func TestRouteAgreesWithSelectors(t *testing.T) {
	types := []string{"fs.write", "fs.create", "fs.>", "fs.*", "*.write", ">", "vector.insert"}
	paths := []string{"", "/data/**", "/data/team1/**", "/data/team1/**/*.md", "/data/team2/a.md", "/data/*/x/**",
		"**/*.md", "/data/team3", "re:^/data/team[12]/", "/data/{team1,team4}/**", "/other/**"}
	var routes []Route[int]
	var sels []*CompiledSelector
	for i := range 300 {
		sel := Selector{Type: types[i%len(types)], Path: paths[(i/len(types))%len(paths)]}
		if i%5 == 0 {
			sel.Filter = "size > 10"
		}
		cs, err := sel.Compile()
		if err != nil {
			t.Fatal(err)
		}
		sels = append(sels, cs)
		routes = append(routes, Route[int]{Name: fmt.Sprint(i), Selector: sel, Targets: []int{i}})
	}
	r := New[int](Options[int]{CacheSize: 8})
	if err := r.Add(routes...); err != nil {
		t.Fatal(err)
	}
	subjects := []string{"/data/team1/a.md", "/data/team1/x/y.md", "/data/team2/a.md", "/data/team3", "/data/team3/z",
		"/data/q/x/r", "/other", "/data", "/", "", "doc-1", "/data/team4/a.txt"}
	evTypes := []string{"fs.write", "fs.create", "fs.rename", "vector.insert", "a.write", "fs", "fs.a.b"}
	for round := range 3 { // later rounds are served from the cache
		for _, typ := range evTypes {
			for _, subj := range subjects {
				ev := &event.Event{Type: typ, Subject: subj}
				ev.Context.SetSize(int64(round * 10))
				var got, want []int
				r.Route(ev, func(tgt int, _ *event.Event) error { got = append(got, tgt); return nil })
				for i, cs := range sels {
					if cs.Match(ev) {
						want = append(want, i)
					}
				}
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Fatalf("Route(%s %s) delivered to %v, want %v", typ, subj, got, want)
				}
			}
		}
	}
	if e := r.Table().candidates("fs.write"); e.byDir == nil {
		t.Errorf("fs.write has %d candidates with literal directories, but no index", len(e.scan))
	}
}
