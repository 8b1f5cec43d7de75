package rules

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

const settleRules = `
rules:
  - name: settled
    when: 'type == "fs.write" && attrs["count"] == "1000"'
    settle: 200ms
  - name: settled-any
    when: 'type == "fs.write"'
    settle: 200ms
  - name: raw
    when: 'type == "fs.write"'
`

// TestSettledRule: a rule with settle sees one event per burst on a path
// (the last, with count and first), released once a later event shows the
// path quiet for the settle time; a rule without settle sees every event.
func TestSettledRule(t *testing.T) {
	s := openStream(t, t.TempDir())
	var evs []*event.Event
	for i := range 1000 {
		evs = append(evs, fsEv(float64(i)/1000, "fs.write", "/a", 1))
	}
	evs = append(evs, fsEv(5, "fs.write", "/b", 1)) // /a is quiet by then
	publish(t, s.m, evs...)
	e, err := NewEngine(mustParse(t, settleRules), s.options())
	if err != nil {
		t.Fatal(err)
	}
	// 1,001 raw matches, the settled one and the settled-any one.
	runUntil(t, e, func() bool { return e.Stats().Cursor >= 1001 && e.Stats().Published >= 1003 })
	by := map[string][]MatchData{}
	for _, d := range matchesIn(t, s.all(t)) {
		by[d.Rule] = append(by[d.Rule], d)
	}
	if n := len(by["raw"]); n != 1001 {
		t.Errorf("raw rule: %d matches, want 1001", n)
	}
	if got := by["settled"]; len(got) != 1 || !slices.Equal(got[0].Seqs, []uint64{1000}) {
		t.Errorf("settled rule (count == 1000): %+v, want one match of seq 1000 (the burst's last)", got)
	} else if want := goldenBase.Add(999*time.Millisecond + 200*time.Millisecond); !got[0].Time.Equal(want) {
		t.Errorf("settled match time %v, want %v (the last event's time plus the settle time)", got[0].Time, want)
	}
	if got := by["settled-any"]; len(got) != 1 || got[0].Key != "" || !slices.Equal(got[0].Seqs, []uint64{1000}) {
		t.Errorf("settled-any rule: %+v, want only /a's burst (/b is still settling)", got)
	}
}

// TestSettledRuleRestart: a burst still settling when the engine stops is
// in its checkpoint: after a restart it is released whole, once.
func TestSettledRuleRestart(t *testing.T) {
	s := openStream(t, t.TempDir())
	const rules = `
rules:
  - name: ten
    when: 'type == "fs.write" && attrs["count"] == "10"'
    settle: 1s
`
	var evs []*event.Event
	for i := range 10 {
		ev := fsEv(float64(i)/100, "fs.write", "/c", 1)
		ev.SetAttr("n", strconv.Itoa(i))
		evs = append(evs, ev)
	}
	publish(t, s.m, evs...)
	e, err := NewEngine(mustParse(t, rules), s.options())
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, e, func() bool { return e.Stats().Cursor >= 10 })
	if got := matchesIn(t, s.all(t)); len(got) != 0 {
		t.Fatalf("matches before the burst is quiet: %+v", got)
	}
	e2, err := NewEngine(mustParse(t, rules), s.options())
	if err != nil {
		t.Fatal(err)
	}
	publish(t, s.m, fsEv(10, "fs.write", "/d", 1))
	runUntil(t, e2, func() bool { return e2.Stats().Cursor >= 11 && e2.Stats().Published >= 1 })
	got := matchesIn(t, s.all(t))
	if len(got) != 1 || !slices.Equal(got[0].Seqs, []uint64{10}) {
		t.Errorf("after a restart: %+v, want one match of the whole burst (seq 10)", got)
	}
}

// TestSettleKey: settle is a duration from 1ms to 1m.
func TestSettleKey(t *testing.T) {
	for _, tc := range []struct {
		val string
		ok  bool
	}{{"200ms", true}, {"1m", true}, {"0s", false}, {"2m", false}, {"soon", false}} {
		_, err := Parse("r.yaml", []byte("rules:\n  - name: r\n    when: 'type == \"fs.write\"'\n    settle: "+tc.val+"\n"))
		if (err == nil) != tc.ok {
			t.Errorf("settle: %s: err %v, want ok=%v", tc.val, err, tc.ok)
		}
	}
}

// TestSettledRuleTest: `semprop rules test` settles as the engine does.
func TestSettledRuleTest(t *testing.T) {
	var log strings.Builder
	for i := range 5 {
		fmt.Fprintf(&log, `{"specversion":"1.0","id":"01J%023d","source":"t","type":"fs.write","subject":"/a","time":"2026-01-01T00:00:00.%03dZ"}`+"\n", i, i)
	}
	log.WriteString(`{"specversion":"1.0","id":"01J99999999999999999999999","source":"t","type":"fs.write","subject":"/b","time":"2026-01-01T00:00:05Z"}` + "\n")
	set := mustParse(t, `
rules:
  - name: five
    when: 'type == "fs.write" && attrs["count"] == "5"'
    settle: 100ms
`)
	var out strings.Builder
	if err := Test(&out, set, strings.NewReader(log.String()), TestOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, `"seqs":[5]`) || strings.Count(got, "\n") != 1 {
		t.Errorf("rules test output %q, want one match of seq 5", got)
	}
}
