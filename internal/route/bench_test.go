package route

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/semprop/semprop/event"

	"github.com/semprop/semprop/internal/cputime"
)

// tenKRoutes builds 10,000 routes: 9,000 literal types, 500 with "*", 400
// with ">", and 100 fs.write routes with path globs.
func tenKRoutes() []Route[int] {
	var rs []Route[int]
	add := func(typ, path string) {
		rs = append(rs, Route[int]{Name: fmt.Sprintf("r%d", len(rs)), Selector: Selector{Type: typ, Path: path}, Targets: []int{len(rs)}})
	}
	for i := range 9000 {
		add(fmt.Sprintf("svc%d.op%d", i%900, i/900), "")
	}
	for i := range 500 {
		add(fmt.Sprintf("svc%d.*", i), "")
	}
	for i := range 400 {
		add(fmt.Sprintf("svc%d.op1.>", i), "")
	}
	for i := range 100 {
		add("fs.write", fmt.Sprintf("/data/team%d/**", i))
	}
	return rs
}

func benchEvents() []*event.Event {
	var evs []*event.Event
	for i := range 64 {
		evs = append(evs, &event.Event{Type: fmt.Sprintf("svc%d.op%d", (i*37)%900, i%10), Subject: "/x"})
	}
	return evs
}

func newBenchRouter(b *testing.B) *Router[int] {
	r := New[int](Options[int]{})
	if err := r.Add(tenKRoutes()...); err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkRoute10k routes events of 64 recurring types through 10,000
// routes (each event matches 1-3 of them), cached by type.
func BenchmarkRoute10k(b *testing.B) {
	r := newBenchRouter(b)
	evs := benchEvents()
	deliver := DeliverFunc[int](ok[int])
	var delivered int
	b.ReportAllocs()
	i := 0
	start := cputime.Now()
	for b.Loop() {
		delivered += r.Route(evs[i&63], deliver)
		i++
	}
	cputime.Report(b, start)
	if delivered == 0 {
		b.Fatal("nothing delivered")
	}
	b.ReportMetric(float64(delivered)/float64(i), "targets/op")
	st := r.Stats()
	b.ReportMetric(float64(st.CacheHits)/float64(st.CacheHits+st.CacheMisses), "cache-hit-ratio")
}

// BenchmarkRoute10kP50 times batches of 64 routings and reports the median
// per-event time over batches (timer overhead amortised over a batch).
func BenchmarkRoute10kP50(b *testing.B) {
	r := newBenchRouter(b)
	evs := benchEvents()
	deliver := DeliverFunc[int](ok[int])
	var per []float64
	b.ReportAllocs()
	start := cputime.Now()
	for b.Loop() {
		start := time.Now()
		for _, ev := range evs {
			r.Route(ev, deliver)
		}
		per = append(per, float64(time.Since(start).Nanoseconds())/float64(len(evs)))
	}
	cputime.Report(b, start)
	slices.Sort(per)
	b.ReportMetric(per[len(per)/2], "p50-ns/event")
	b.ReportMetric(per[len(per)*99/100], "p99-ns/event")
}

// BenchmarkRoute10kFsWrite routes fs.write events, which are candidates
// for the 100 path-glob routes: the cost of the second step.
func BenchmarkRoute10kFsWrite(b *testing.B) {
	r := newBenchRouter(b)
	ev := &event.Event{Type: "fs.write", Subject: "/data/team42/notes/a.md"}
	deliver := DeliverFunc[int](ok[int])
	b.ReportAllocs()
	start := cputime.Now()
	for b.Loop() {
		r.Route(ev, deliver)
	}
	cputime.Report(b, start)
}

// BenchmarkRoute10kUncached measures a trie walk per event: the cache has
// one set of 4 ways for 64 recurring types, so nearly every lookup misses.
func BenchmarkRoute10kUncached(b *testing.B) {
	r := New[int](Options[int]{CacheSize: 1})
	if err := r.Add(tenKRoutes()...); err != nil {
		b.Fatal(err)
	}
	evs := benchEvents()
	deliver := DeliverFunc[int](ok[int])
	b.ReportAllocs()
	i := 0
	start := cputime.Now()
	for b.Loop() {
		r.Route(evs[i&63], deliver)
		i++
	}
	cputime.Report(b, start)
	st := r.Stats()
	b.ReportMetric(float64(st.CacheMisses)/float64(st.CacheHits+st.CacheMisses), "miss-ratio")
}

func BenchmarkSelectorMatch(b *testing.B) {
	s, err := ParseSelector("fs.>", "/data/**/*.md", "size > 0")
	if err != nil {
		b.Fatal(err)
	}
	ev := &event.Event{Type: "fs.write", Subject: "/data/notes/a.md"}
	ev.Context.SetSize(10)
	b.ReportAllocs()
	start := cputime.Now()
	for b.Loop() {
		s.Match(ev)
	}
	cputime.Report(b, start)
}

func BenchmarkGroupWithBreakers(b *testing.B) {
	r := New[int](Options[int]{})
	if err := r.Add(Route[int]{Name: "g", Selector: Selector{Type: "job.>"}, Targets: []int{0, 1, 2, 3},
		Strategy: RoundRobin, Breakers: true}); err != nil {
		b.Fatal(err)
	}
	ev := &event.Event{Type: "job.run"}
	deliver := DeliverFunc[int](ok[int])
	b.ReportAllocs()
	start := cputime.Now()
	for b.Loop() {
		r.Route(ev, deliver)
	}
	cputime.Report(b, start)
}

func BenchmarkLanes(b *testing.B) {
	q := NewLanes[int](1024)
	b.ReportAllocs()
	start := cputime.Now()
	for b.Loop() {
		q.Push(event.PriorityNormal, 1)
		q.TryPop()
	}
	cputime.Report(b, start)
}

func BenchmarkSwap(b *testing.B) {
	r := newBenchRouter(b)
	b.ReportAllocs()
	start := cputime.Now()
	for b.Loop() {
		if err := r.Add(Route[int]{Name: "dyn", Selector: Selector{Type: "dyn.>"}, Targets: []int{1}}); err != nil {
			b.Fatal(err)
		}
	}
	cputime.Report(b, start)
}

// BenchmarkRoute10kParallel routes from all cores at once: the shared
// counters and the type cache under contention.
func BenchmarkRoute10kParallel(b *testing.B) {
	r := newBenchRouter(b)
	evs := benchEvents()
	deliver := DeliverFunc[int](ok[int])
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Route(evs[i&63], deliver)
			i++
		}
	})
}
