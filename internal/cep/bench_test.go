package cep

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/cputime"
)

// benchEngine returns an engine with n patterns over the types t0..t9,
// a mix of every kind, each keyed by subject and each wanting the subjects
// under its own directory /r<i>/ only, as real rules are selective.
func benchEngine(tb testing.TB, n int) *Engine {
	tb.Helper()
	var ps []*Pattern
	for i := range n {
		a, b := fmt.Sprint("t", i%10), fmt.Sprint("t", (i+1)%10)
		dir := fmt.Sprintf("/r%d/", i)
		in := func(typ string) Cond {
			return CondFunc(func(ev *event.Event, _ []*event.Event) bool {
				return ev.Type == typ && strings.HasPrefix(ev.Subject, dir)
			})
		}
		p := &Pattern{Name: fmt.Sprint("r", i), By: bySubject, Types: []string{a, b}, Within: time.Second}
		switch i % 5 {
		case 0:
			p.Kind, p.Steps, p.Types = KindSingle, []Cond{in(a)}, []string{a}
		case 1:
			p.Kind, p.Count, p.Steps, p.Types = KindCount, 50, []Cond{in(a)}, []string{a}
		case 2:
			p.Kind, p.Steps = KindSequence, []Cond{in(a), in(b)}
		case 3:
			p.Kind, p.Steps, p.Not = KindNotFollowedBy, []Cond{in(a)}, in(b)
		case 4:
			p.Kind, p.Steps, p.Types = KindAbsent, []Cond{in(a)}, []string{a}
		}
		ps = append(ps, p)
	}
	e, err := New(ps, Options{Limits: Limits{MaxKeys: 10000, MaxPartials: 100}})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func BenchmarkUninterestingEvent(b *testing.B) {
	e := benchEngine(b, 100)
	x := ev(1, 0, "nobody.cares", "/x")
	b.ReportAllocs()
	start := cputime.Now()
	for b.Loop() {
		e.Process(x)
	}
	cputime.Report(b, start)
}

func BenchmarkAdvancePartial(b *testing.B) {
	e := benchEngine(b, 100)
	p := &Pattern{Name: "s", Kind: KindSequence, By: bySubject, Types: []string{"a", "b", "c"},
		Steps: []Cond{typeIs("a"), typeIs("b"), typeIs("c")}}
	if err := e.Replace(append(e.patterns(), p)); err != nil {
		b.Fatal(err)
	}
	evs := []*event.Event{ev(1, 0, "a", "/x"), ev(2, 0, "b", "/x"), ev(3, 0, "c", "/x")}
	b.ReportAllocs()
	i := 0
	start := cputime.Now()
	for b.Loop() {
		x := evs[i%3]
		x.Time = base.Add(time.Duration(i) * time.Microsecond)
		e.Process(x)
		i++
	}
	cputime.Report(b, start)
}

// BenchmarkMixed: 100 patterns, a stream over 12 types (two nobody
// wants) and 2000 subjects, half of them under a pattern's directory.
func BenchmarkMixed(b *testing.B) {
	e := benchEngine(b, 100)
	const n = 1 << 14
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = ev(uint64(i+1), i, fmt.Sprint("t", i%12), fmt.Sprintf("/r%d/f%d", (i*7919)%200, i%10))
	}
	b.ReportAllocs()
	i := 0
	start := cputime.Now()
	for b.Loop() {
		x := evs[i%n]
		x.Time = base.Add(time.Duration(i) * time.Microsecond)
		e.Process(x)
		i++
	}
	cputime.Report(b, start)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
}

// BenchmarkKeyAttack: a sequence pattern keyed by subject under 1M
// distinct keys with MaxKeys 10000; reports the heap after the attack.
func BenchmarkKeyAttack(b *testing.B) {
	start := cputime.Now()
	for b.Loop() {
		p := &Pattern{Name: "s", Kind: KindSequence, By: bySubject, Types: []string{"a", "b"},
			Steps: []Cond{typeIs("a"), typeIs("b")}, Within: time.Hour}
		e, _ := New([]*Pattern{p}, Options{Limits: Limits{MaxKeys: 10000, MaxPartials: 10}})
		runtime.GC()
		var before, peak runtime.MemStats
		runtime.ReadMemStats(&before)
		var maxHeap uint64
		for i := range 1_000_000 {
			e.Process(ev(uint64(i+1), i, "a", fmt.Sprint("/attack/", i)))
			if i%100_000 == 99_999 {
				runtime.GC()
				runtime.ReadMemStats(&peak)
				maxHeap = max(maxHeap, peak.HeapAlloc)
			}
		}
		c := e.Counters(0)
		b.ReportMetric(float64(maxHeap-before.HeapAlloc)/(1<<20), "peak-MiB")
		b.ReportMetric(float64(maxHeap-before.HeapAlloc)/float64(c.Keys), "B/key")
		b.ReportMetric(float64(c.KeysEvicted), "evicted")
	}
	cputime.Report(b, start)
}
