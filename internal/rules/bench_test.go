package rules

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/cep"
	"github.com/semprop/semprop/internal/cputime"
	"github.com/semprop/semprop/internal/filter"
)

var benchTypes = []string{"fs.write", "fs.create", "fs.delete", "fs.rename", "fs.attrib"}

// benchRules returns n rules of every kind over the fs.* types, each
// about its own directory /srv/r<i>/, as a rule file would have them.
func benchRules(tb testing.TB, n int) *Set {
	tb.Helper()
	var sb strings.Builder
	sb.WriteString("rules:\n")
	for i := range n {
		a, b := benchTypes[i%len(benchTypes)], benchTypes[(i+1)%len(benchTypes)]
		in := fmt.Sprintf(`type == "%s" && subject startsWith "/srv/r%d/"`, a, i)
		fmt.Fprintf(&sb, "  - name: r%d\n", i)
		switch i % 5 {
		case 0:
			fmt.Fprintf(&sb, "    when: '%s'\n", in)
		case 1:
			fmt.Fprintf(&sb, "    when: '%s'\n    count: 20\n    within: 10s\n    by: pid\n", in)
		case 2:
			fmt.Fprintf(&sb, "    sequence:\n      - {as: x, when: '%s'}\n      - {when: 'type == \"%s\" && subject == x.subject'}\n    within: 5s\n    by: subject\n", in, b)
		case 3:
			fmt.Fprintf(&sb, "    when: '%s'\n    not_followed_by: 'type == \"%s\" && subject == first.subject'\n    within: 30s\n", in, b)
		case 4:
			fmt.Fprintf(&sb, "    absent: '%s'\n    for: 10m\n    by: subject\n", in)
		}
	}
	set, err := Parse("bench.yaml", []byte(sb.String()))
	if err != nil {
		tb.Fatal(err)
	}
	return set
}

func benchEngine(tb testing.TB, set *Set) *cep.Engine {
	tb.Helper()
	e, err := cep.New(set.patterns(0), cep.Options{OriginAttr: AttrRule, DepthAttr: AttrDepth, MaxDepth: DefaultMaxDepth,
		Limits: cep.Limits{MaxKeys: 10000, MaxPartials: 100}})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// BenchmarkRulesUnwanted: 100 rules loaded, an event of a type none reads.
func BenchmarkRulesUnwanted(b *testing.B) {
	e := benchEngine(b, benchRules(b, 100))
	ev := &event.Event{Seq: 1, Type: "fs.open", Subject: "/srv/r1/x", Time: goldenBase}
	b.ReportAllocs()
	start := cputime.Now()
	for b.Loop() {
		e.Process(ev)
	}
	cputime.Report(b, start)
}

// TestRulesUnwantedAllocs pins that path at zero allocations.
func TestRulesUnwantedAllocs(t *testing.T) {
	e := benchEngine(t, benchRules(t, 100))
	ev := &event.Event{Seq: 1, Type: "fs.open", Subject: "/srv/r1/x", Time: goldenBase}
	if n := testing.AllocsPerRun(1000, func() { e.Process(ev) }); n != 0 {
		t.Errorf("unwanted event: %v allocs, want 0", n)
	}
}

// BenchmarkRulesAdvance: an event that advances a partial match of a
// sequence whose second step reads the first's subject (100 rules loaded).
func BenchmarkRulesAdvance(b *testing.B) {
	e := benchEngine(b, benchRules(b, 100))
	// r2: fs.delete under /srv/r2/ then fs.rename of the same subject.
	first := &event.Event{Type: "fs.delete", Subject: "/srv/r2/f"}
	next := &event.Event{Type: "fs.rename", Subject: "/srv/r2/f"}
	b.ReportAllocs()
	i := 0
	start := cputime.Now()
	for b.Loop() {
		ev := first
		if i%2 == 1 {
			ev = next
		}
		ev.Seq, ev.Time = uint64(i+1), goldenBase.Add(time.Duration(i)*time.Microsecond)
		e.Process(ev)
		i++
	}
	cputime.Report(b, start)
}

// BenchmarkRulesAdvanceP50 times each advancing event alone (the rename
// that completes the partial match the delete before it started) and
// reports the median and the 99th percentile: on a shared machine the
// median is the steady figure.
func BenchmarkRulesAdvanceP50(b *testing.B) {
	e := benchEngine(b, benchRules(b, 100))
	first := &event.Event{Type: "fs.delete", Subject: "/srv/r2/f"}
	next := &event.Event{Type: "fs.rename", Subject: "/srv/r2/f"}
	var ds []time.Duration
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		first.Seq, first.Time = uint64(2*i+1), goldenBase.Add(time.Duration(2*i)*time.Microsecond)
		e.Process(first)
		next.Seq, next.Time = uint64(2*i+2), goldenBase.Add(time.Duration(2*i+1)*time.Microsecond)
		t0 := time.Now()
		if len(e.Process(next)) != 1 {
			b.Fatal("no match")
		}
		ds = append(ds, time.Since(t0))
		i++
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2]), "p50-ns")
	b.ReportMetric(float64(ds[len(ds)*99/100]), "p99-ns")
}

// mixedWorkload is a file-system stream: mostly writes and opens (which
// no rule reads), over 400 directories of which 100 have rules.
func mixedWorkload(n int) []*event.Event {
	types := []string{"fs.write", "fs.write", "fs.write", "fs.open", "fs.open", "fs.close", "fs.create", "fs.delete", "fs.rename", "fs.attrib"}
	evs := make([]*event.Event, n)
	for i := range evs {
		ev := &event.Event{Seq: uint64(i + 1), Type: types[(i*7)%len(types)],
			Subject: fmt.Sprintf("/srv/r%d/f%d", (i*7919)%400, i%16)}
		ev.Context.SetPID(int32(100 + i%8))
		evs[i] = ev
	}
	return evs
}

// BenchmarkRulesMixed: 100 rules over the mixed workload; events/s is the
// throughput of one core.
func BenchmarkRulesMixed(b *testing.B) {
	e := benchEngine(b, benchRules(b, 100))
	evs := mixedWorkload(1 << 14)
	b.ReportAllocs()
	i := 0
	start := cputime.Now()
	for b.Loop() {
		ev := evs[i%len(evs)]
		ev.Time = goldenBase.Add(time.Duration(i) * time.Microsecond)
		e.Process(ev)
		i++
	}
	cputime.Report(b, start)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

const singleCond = `type == "fs.write" && subject startsWith "/srv/r1/" && comm != "rsync"`

// BenchmarkSingleConditionRule and BenchmarkSingleConditionFilter: the
// same single-event condition as a rule (through the engine) and as a
// plain filter.Expr, on an event it accepts: the engine's overhead.
func BenchmarkSingleConditionRule(b *testing.B) {
	set, err := Parse("b.yaml", []byte("rules:\n  - name: one\n    when: '"+singleCond+"'\n"))
	if err != nil {
		b.Fatal(err)
	}
	e := benchEngine(b, set)
	ev := &event.Event{Seq: 1, Type: "fs.write", Subject: "/srv/r1/x", Time: goldenBase}
	b.ReportAllocs()
	start := cputime.Now()
	for b.Loop() {
		if len(e.Process(ev)) != 1 {
			b.Fatal("no match")
		}
	}
	cputime.Report(b, start)
}

func BenchmarkSingleConditionFilter(b *testing.B) {
	f, err := filter.Expr(singleCond)
	if err != nil {
		b.Fatal(err)
	}
	ev := &event.Event{Seq: 1, Type: "fs.write", Subject: "/srv/r1/x", Time: goldenBase}
	b.ReportAllocs()
	start := cputime.Now()
	for b.Loop() {
		if !f.Match(ev) {
			b.Fatal("no match")
		}
	}
	cputime.Report(b, start)
}

// BenchmarkSingleConditionRuleMiss and ...FilterMiss: the same, on an
// event of the condition's type that it rejects.
func BenchmarkSingleConditionRuleMiss(b *testing.B) {
	set, _ := Parse("b.yaml", []byte("rules:\n  - name: one\n    when: '"+singleCond+"'\n"))
	e := benchEngine(b, set)
	ev := &event.Event{Seq: 1, Type: "fs.write", Subject: "/srv/r2/x", Time: goldenBase}
	b.ReportAllocs()
	start := cputime.Now()
	for b.Loop() {
		e.Process(ev)
	}
	cputime.Report(b, start)
}

func BenchmarkSingleConditionFilterMiss(b *testing.B) {
	f, _ := filter.Expr(singleCond)
	ev := &event.Event{Seq: 1, Type: "fs.write", Subject: "/srv/r2/x", Time: goldenBase}
	b.ReportAllocs()
	start := cputime.Now()
	for b.Loop() {
		f.Match(ev)
	}
	cputime.Report(b, start)
}
