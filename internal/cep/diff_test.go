package cep

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/semprop/semprop/event"
)

// tcond is a random condition: type in types, optionally a fixed subject,
// a subject equal to a bound event's, and a pid bound.
type tcond struct {
	types    []string
	subj     string
	sameSubj int // index of a bound event whose subject must equal; -1: none
	pidMax   int32
}

func (c tcond) Match(ev *event.Event, bound []*event.Event) bool {
	if !slices.Contains(c.types, ev.Type) {
		return false
	}
	if c.subj != "" && ev.Subject != c.subj {
		return false
	}
	if c.sameSubj >= 0 && (c.sameSubj >= len(bound) || bound[c.sameSubj].Subject != ev.Subject) {
		return false
	}
	return c.pidMax == 0 || ev.Context.PID <= c.pidMax
}

func (c tcond) String() string {
	return fmt.Sprintf("{%v %q same=%d pid<=%d}", c.types, c.subj, c.sameSubj, c.pidMax)
}

var (
	genTypes = []string{"a", "b", "c", "d"} // "z" events exist but no pattern wants them
	genSubj  = []string{"/x", "/y", "/z"}
)

func bySubject(ev *event.Event) string { return ev.Subject }
func byPID(ev *event.Event) string     { return fmt.Sprint(ev.Context.PID) }

func genCond(r *rand.Rand, bound int) tcond {
	c := tcond{sameSubj: -1}
	for _, t := range genTypes {
		if r.IntN(3) == 0 {
			c.types = append(c.types, t)
		}
	}
	if len(c.types) == 0 {
		c.types = []string{genTypes[r.IntN(len(genTypes))]}
	}
	if r.IntN(4) == 0 {
		c.subj = genSubj[r.IntN(len(genSubj))]
	}
	if bound > 0 && r.IntN(2) == 0 {
		c.sameSubj = r.IntN(bound)
	}
	if r.IntN(4) == 0 {
		c.pidMax = int32(1 + r.IntN(3))
	}
	return c
}

func genPattern(r *rand.Rand, i int) (*Pattern, string) {
	p := &Pattern{Name: fmt.Sprintf("r%d", i), Kind: Kind(1 + r.IntN(5))}
	var desc strings.Builder
	var conds []tcond
	switch p.Kind {
	case KindSingle, KindCount, KindAbsent:
		conds = []tcond{genCond(r, 0)}
	case KindSequence:
		n := 2 + r.IntN(2)
		for j := range n {
			conds = append(conds, genCond(r, j))
		}
	case KindNotFollowedBy:
		conds = []tcond{genCond(r, 0)}
		not := genCond(r, 1)
		p.Not = not
		conds = append(conds, not)
	}
	for _, c := range conds[:len(conds)-boolInt(p.Kind == KindNotFollowedBy)] {
		p.Steps = append(p.Steps, c)
	}
	types := map[string]bool{}
	for _, c := range conds {
		for _, t := range c.types {
			types[t] = true
		}
	}
	for t := range types {
		p.Types = append(p.Types, t)
	}
	slices.Sort(p.Types)
	switch r.IntN(3) {
	case 1:
		p.By = bySubject
	case 2:
		p.By = byPID
	}
	if p.Kind == KindCount {
		p.Count = 1 + r.IntN(4)
		if r.IntN(3) == 0 {
			p.Distinct = bySubject
		}
	}
	p.Within = time.Duration(r.IntN(5)) * 500 * time.Millisecond
	if (p.Kind == KindNotFollowedBy || p.Kind == KindAbsent) && p.Within == 0 {
		p.Within = time.Second
	}
	if r.IntN(4) == 0 {
		p.Cooldown = time.Duration(1+r.IntN(4)) * 500 * time.Millisecond
	}
	if r.IntN(5) == 0 {
		p.MaxRate = 1 + r.IntN(3)
		p.RatePeriod = time.Duration(1+r.IntN(3)) * time.Second
	}
	fmt.Fprintf(&desc, "%s %s conds=%v by=%v count=%d distinct=%v within=%v cooldown=%v rate=%d/%v",
		p.Name, p.Kind, conds, p.By != nil, p.Count, p.Distinct != nil, p.Within, p.Cooldown, p.MaxRate, p.RatePeriod)
	return p, desc.String()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// genEvents returns n events in arrival order, on a 250 ms grid so that
// window edges are hit exactly, some of them out of order.
func genEvents(r *rand.Rand, n int) []*event.Event {
	var evs []*event.Event
	now := base
	for i := range n {
		now = now.Add(time.Duration(r.IntN(5)) * 250 * time.Millisecond)
		at := now
		if r.IntN(6) == 0 {
			at = at.Add(-time.Duration(r.IntN(9)) * 250 * time.Millisecond)
		}
		ev := &event.Event{Seq: uint64(i + 1), Time: at, Subject: genSubj[r.IntN(len(genSubj))]}
		if r.IntN(8) == 0 {
			ev.Type = "z"
		} else {
			ev.Type = genTypes[r.IntN(len(genTypes))]
		}
		ev.Context.SetPID(int32(1 + r.IntN(3)))
		evs = append(evs, ev)
	}
	return evs
}

// runEngine feeds evs through an engine, snapshotting and restoring it at
// snapAt (if >= 0), and returns its matches.
func runEngine(t testing.TB, ps []*Pattern, opts Options, evs []*event.Event, snapAt int) []refMatch {
	t.Helper()
	e, err := New(ps, opts)
	if err != nil {
		t.Fatal(err)
	}
	var got []refMatch
	for i, ev := range evs {
		if i == snapAt {
			b, err := e.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			e, err = New(ps, opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Restore(b); err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range e.Process(ev) {
			got = append(got, refOf(m))
		}
	}
	for _, m := range e.Flush() {
		got = append(got, refOf(m))
	}
	for i := range e.Len() {
		if c := e.Counters(i); c.Evicted+c.KeysEvicted > 0 {
			t.Fatalf("rule %d hit a limit: %+v", i, c)
		}
	}
	return got
}

type diffStats struct{ cases, events, rules, matches int }

// diffOne runs one random case; it reports a mismatch through t.
func diffOne(t testing.TB, seed uint64, st *diffStats) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var ps []*Pattern
	var descs []string
	for i := range 1 + r.IntN(4) {
		p, d := genPattern(r, i)
		ps = append(ps, p)
		descs = append(descs, d)
	}
	evs := genEvents(r, r.IntN(60))
	lateness := time.Duration(r.IntN(3)) * 500 * time.Millisecond
	opts := Options{Lateness: lateness}
	snapAt := -1
	if len(evs) > 0 && r.IntN(2) == 0 {
		snapAt = r.IntN(len(evs))
	}
	want := reference(ps, evs, int64(lateness))
	got := runEngine(t, ps, opts, evs, snapAt)
	slices.SortFunc(got, cmpRef)
	if diff := cmp.Diff(want, got); diff != "" {
		var sb strings.Builder
		for _, ev := range evs {
			fmt.Fprintf(&sb, "  seq=%d t=%v type=%s subj=%s pid=%d\n", ev.Seq, ev.Time.Sub(base), ev.Type, ev.Subject, ev.Context.PID)
		}
		t.Fatalf("seed %d: lateness %v snapAt %d\nrules:\n  %s\nevents:\n%s(-reference +engine):\n%s",
			seed, lateness, snapAt, strings.Join(descs, "\n  "), sb.String(), diff)
	}
	if st != nil {
		st.cases++
		st.events += len(evs)
		st.rules += len(ps)
		st.matches += len(want)
	}
}

// TestDifferential compares the engine with the brute-force reference on
// random rule sets and event streams.
func TestDifferential(t *testing.T) {
	n := 20000
	if testing.Short() || raceEnabled {
		n = 3000
	}
	var st diffStats
	for seed := range uint64(n) {
		diffOne(t, seed, &st)
	}
	t.Logf("differential: %d cases, %d events, %d rules, %d matches compared, 0 mismatches",
		st.cases, st.events, st.rules, st.matches)
}

func FuzzDifferential(f *testing.F) {
	for _, s := range []uint64{0, 1, 42, 1 << 40} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seed uint64) { diffOne(t, seed, nil) })
}
