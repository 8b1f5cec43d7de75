package cep

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

func typeIs(typ string) Cond {
	return CondFunc(func(ev *event.Event, _ []*event.Event) bool { return ev.Type == typ })
}

func ev(seq uint64, ms int, typ, subj string) *event.Event {
	return &event.Event{Seq: seq, Type: typ, Subject: subj, Time: base.Add(time.Duration(ms) * time.Millisecond)}
}

func feed(e *Engine, evs ...*event.Event) []refMatch {
	var out []refMatch
	for _, ev := range evs {
		for _, m := range e.Process(ev) {
			out = append(out, refOf(m))
		}
	}
	return out
}

func TestNewRejectsBadPatterns(t *testing.T) {
	for _, p := range []*Pattern{
		{Name: "", Kind: KindSingle, Steps: []Cond{typeIs("a")}},
		{Name: "x", Kind: KindSequence, Steps: []Cond{typeIs("a")}},
		{Name: "x", Kind: KindCount, Steps: []Cond{typeIs("a")}},
		{Name: "x", Kind: KindNotFollowedBy, Steps: []Cond{typeIs("a")}, Within: time.Second},
		{Name: "x", Kind: KindAbsent, Steps: []Cond{typeIs("a")}},
		{Name: "x", Kind: 99, Steps: []Cond{typeIs("a")}},
	} {
		if _, err := New([]*Pattern{p}, Options{}); !errors.Is(err, ErrPattern) {
			t.Errorf("New(%+v) = %v, want ErrPattern", p, err)
		}
	}
	ok := &Pattern{Name: "x", Kind: KindSingle, Steps: []Cond{typeIs("a")}}
	if _, err := New([]*Pattern{ok, ok}, Options{}); !errors.Is(err, ErrPattern) {
		t.Errorf("duplicate names: %v, want ErrPattern", err)
	}
}

// TestMaxKeysEvictsAndCounts: a key-cardinality attack keeps the state
// bounded and every eviction is counted.
func TestMaxKeysEvictsAndCounts(t *testing.T) {
	p := &Pattern{Name: "seq", Kind: KindSequence, Steps: []Cond{typeIs("a"), typeIs("b")},
		By: bySubject, Types: []string{"a", "b"}}
	e, err := New([]*Pattern{p}, Options{Limits: Limits{MaxKeys: 10, MaxPartials: 2}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		feed(e, ev(uint64(i+1), i, "a", fmt.Sprint("/k", i)))
	}
	c := e.Counters(0)
	if c.Keys != 10 || c.KeysEvicted != 990 {
		t.Errorf("keys %d, evicted %d; want 10, 990", c.Keys, c.KeysEvicted)
	}
	// The most recent keys survive: /k999 still completes.
	if got := feed(e, ev(2000, 2000, "b", "/k999")); len(got) != 1 {
		t.Errorf("b on the newest key: %v, want one match", got)
	}
	for i := range 5 {
		feed(e, ev(uint64(3000+i), 3000+i, "a", "/same"))
	}
	if c := e.Counters(0); c.Evicted != 3 {
		t.Errorf("partials evicted %d, want 3", c.Evicted)
	}
}

// TestIdlePurge: keys whose window and cooldown are over are removed.
func TestIdlePurge(t *testing.T) {
	p := &Pattern{Name: "c", Kind: KindCount, Count: 3, Within: time.Second, Steps: []Cond{typeIs("a")},
		By: bySubject, Types: []string{"a"}}
	e, _ := New([]*Pattern{p}, Options{})
	feed(e, ev(1, 0, "a", "/1"), ev(2, 10, "a", "/2"))
	if c := e.Counters(0); c.Keys != 2 {
		t.Fatalf("keys %d, want 2", c.Keys)
	}
	feed(e, ev(3, 1500, "a", "/3"))
	if c := e.Counters(0); c.Keys != 1 || c.Purged != 2 {
		t.Errorf("after 1.5s: keys %d purged %d, want 1, 2", c.Keys, c.Purged)
	}
}

// TestOriginAndDepth: a pattern never sees its own output, and events at
// the depth limit are shown to no pattern.
func TestOriginAndDepth(t *testing.T) {
	p := &Pattern{Name: "m", Kind: KindSingle, Steps: []Cond{typeIs("match")}, Types: []string{"match"}}
	e, _ := New([]*Pattern{p}, Options{OriginAttr: "rule", DepthAttr: "ruledepth", MaxDepth: 2})
	own := ev(1, 0, "match", "")
	own.SetAttr("rule", "m")
	other := ev(2, 1, "match", "")
	other.SetAttr("rule", "x")
	other.SetAttr("ruledepth", "1")
	deep := ev(3, 2, "match", "")
	deep.SetAttr("rule", "x")
	deep.SetAttr("ruledepth", "2")
	var got []Match
	for _, x := range []*event.Event{own, other, deep} {
		got = append(got, e.Process(x)...)
	}
	if len(got) != 1 || got[0].Events[0] != other || got[0].Depth != 2 {
		t.Fatalf("matches %+v, want one of seq 2 at depth 2", got)
	}
}

// TestReplaceKeepsUnchanged: a reload keeps the partial matches of an
// unchanged pattern and drops those of a changed one.
func TestReplaceKeepsUnchanged(t *testing.T) {
	mk := func(name, fp string) *Pattern {
		return &Pattern{Name: name, Kind: KindSequence, Steps: []Cond{typeIs("a"), typeIs("b")},
			Types: []string{"a", "b"}, Fingerprint: fp}
	}
	e, _ := New([]*Pattern{mk("keep", "1"), mk("change", "1")}, Options{})
	feed(e, ev(1, 0, "a", ""))
	if err := e.Replace([]*Pattern{mk("change", "2"), mk("keep", "1"), mk("new", "1")}); err != nil {
		t.Fatal(err)
	}
	got := feed(e, ev(2, 1, "b", ""))
	if len(got) != 1 || got[0].Rule != "keep" {
		t.Errorf("after replace: %v, want one match of keep", got)
	}
	if err := e.Replace([]*Pattern{mk("keep", "1"), mk("keep", "1")}); err == nil {
		t.Error("Replace with duplicate names succeeded")
	}
}

// TestRestoreRejectsGarbage: a corrupt snapshot is an error, not a panic.
func TestRestoreRejectsGarbage(t *testing.T) {
	e, _ := New([]*Pattern{{Name: "x", Kind: KindSingle, Steps: []Cond{typeIs("a")}}}, Options{})
	for _, s := range []string{"", "{", `{"v":2}`, `{"v":1,"rules":[{"name":"x","keys":[{"key":"","evs":[5]}]}]}`} {
		if err := e.Restore([]byte(s)); err == nil {
			t.Errorf("Restore(%q) succeeded", s)
		}
	}
}

func FuzzRestore(f *testing.F) {
	p := &Pattern{Name: "x", Kind: KindSequence, Steps: []Cond{typeIs("a"), typeIs("b")}, Types: []string{"a", "b"}}
	e, _ := New([]*Pattern{p}, Options{})
	feed(e, ev(1, 0, "a", "/x"))
	good, _ := e.Snapshot()
	f.Add(good)
	f.Add([]byte(`{"v":1,"rules":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, _ := New([]*Pattern{p}, Options{})
		if err := e.Restore(data); err != nil {
			return
		}
		feed(e, ev(2, 1, "b", "/x"), ev(3, 2, "a", "/y"))
		e.Flush()
	})
}

// TestUninterestingEventAllocs pins the path of an event no pattern wants
// at zero allocations.
func TestUninterestingEventAllocs(t *testing.T) {
	e := benchEngine(t, 100)
	x := ev(1, 0, "nobody.cares", "/x")
	if e.Wants(x.Type) || !e.Wants("t3") {
		t.Errorf("Wants(%q) = %v, Wants(t3) = %v; want false, true", x.Type, e.Wants(x.Type), e.Wants("t3"))
	}
	e.Process(x)
	if n := testing.AllocsPerRun(1000, func() { e.Process(x) }); n != 0 {
		t.Errorf("uninteresting event: %v allocs, want 0", n)
	}
}

// TestLateAndAdvanceTo: late events are dropped and counted; AdvanceTo
// fires due timers on a quiet stream and makes older events late.
func TestLateAndAdvanceTo(t *testing.T) {
	p := &Pattern{Name: "nfb", Kind: KindNotFollowedBy, Steps: []Cond{typeIs("a")}, Not: typeIs("b"),
		Within: time.Second, Types: []string{"a", "b"}}
	e, _ := New([]*Pattern{p}, Options{Lateness: 500 * time.Millisecond})
	feed(e, ev(1, 0, "a", "/x"), ev(2, 1000, "z", "/x"), ev(3, 600, "b", "/x"))
	if got := feed(e, ev(4, 100, "b", "/x")); len(got) != 0 || e.Late() != 1 || e.Counters(0).Late != 1 {
		t.Fatalf("late b: matches %v, late %d (rule %d); want none, 1, 1", got, e.Late(), e.Counters(0).Late)
	}
	// The b at 600ms (within the lateness) cancelled the trigger.
	if got := e.AdvanceTo(base.Add(time.Hour).UnixNano()); len(got) != 0 {
		t.Fatalf("AdvanceTo: %v, want nothing (cancelled)", got)
	}
	feed(e, ev(5, 3600_000+10, "a", "/y"))
	var got []Match
	got = append(got, e.AdvanceTo(base.Add(2*time.Hour).UnixNano())...)
	if len(got) != 1 || got[0].Events[0].Seq != 5 || got[0].Time != base.Add(time.Hour+1010*time.Millisecond).UnixNano() {
		t.Fatalf("AdvanceTo: %+v, want the trigger of seq 5 at its deadline", got)
	}
	if got := feed(e, ev(6, 3600_000+20, "b", "/y")); len(got) != 0 || e.Late() != 2 {
		t.Errorf("event before the advanced watermark: %v, late %d; want dropped as late", got, e.Late())
	}
}
