package rules

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

var quiet = slog.New(slog.DiscardHandler)

// stream is a journal and a manager in a directory.
type stream struct {
	dir string
	j   *journal.Journal
	m   *propagate.Manager
}

func openStream(t testing.TB, dir string) *stream {
	t.Helper()
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: journal.FsyncNever, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Source: "semprop://test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s := &stream{dir: dir, j: j, m: m}
	t.Cleanup(func() { s.close() })
	return s
}

func (s *stream) close() {
	if s.m != nil {
		s.m.Close()
		s.j.Close()
		s.m, s.j = nil, nil
	}
}

func (s *stream) options() Options {
	return Options{
		Dir: filepath.Join(s.dir, "rules"),
		Open: func(from uint64) (Source, error) {
			r, err := s.m.Reader(from)
			if err != nil {
				return nil, err
			}
			return r, nil
		},
		Publisher:       s.m,
		CheckpointEvery: 20 * time.Millisecond,
		Logger:          quiet,
	}
}

// all reads every event in the journal.
func (s *stream) all(t testing.TB) []*event.Event {
	t.Helper()
	r, err := s.m.Reader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []*event.Event
	for {
		ev := new(event.Event)
		ok, err := r.TryNext(ev)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		out = append(out, ev)
	}
}

// matchesIn returns the data of the rule events in evs, in journal order.
func matchesIn(t testing.TB, evs []*event.Event) []MatchData {
	t.Helper()
	var out []MatchData
	for _, ev := range evs {
		if ev.Type != TypeMatch && ev.Type != TypeThrottled {
			continue
		}
		var d MatchData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// runUntil runs the engine until cond holds (or 20s pass), then stops it.
func runUntil(t testing.TB, e *Engine, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("condition not reached; stats %+v", e.Stats())
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
}

func publish(t testing.TB, m *propagate.Manager, evs ...*event.Event) {
	t.Helper()
	for _, ev := range evs {
		if _, err := m.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

func fsEv(sec float64, typ, subj string, pid int32) *event.Event {
	ev := &event.Event{Type: typ, Subject: subj, Time: goldenBase.Add(time.Duration(sec * float64(time.Second)))}
	ev.Context.SetPID(pid)
	return ev
}

const burstRules = `
rules:
  - name: burst
    when: 'type == "fs.delete"'
    count: 2
    within: 10s
    by: pid
`

func mustParse(t testing.TB, s string) *Set {
	t.Helper()
	set, err := Parse("rules.yaml", []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestEngineRunAndRestart: matches are published once; a restart from the
// checkpoint publishes nothing again and continues.
func TestEngineRunAndRestart(t *testing.T) {
	s := openStream(t, t.TempDir())
	publish(t, s.m, fsEv(0, "fs.delete", "/a", 1), fsEv(1, "fs.write", "/b", 1), fsEv(2, "fs.delete", "/c", 1),
		fsEv(3, "fs.delete", "/d", 2))
	e, err := NewEngine(mustParse(t, burstRules), s.options())
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, e, func() bool { return e.Stats().Cursor >= 5 })
	got := matchesIn(t, s.all(t))
	want := []MatchData{{Rule: "burst", Key: "1", Seqs: []uint64{1, 3}, Message: "burst: 1: 2 event(s)", Time: goldenBase.Add(2 * time.Second)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("matches (-want +got):\n%s", diff)
	}
	ev := s.all(t)[4]
	if r, _ := ev.Attr(AttrRule); r != "burst" || ev.Subject != "1" || ev.ID != MatchID(TypeMatch, "burst", "1", ev.Time.UnixNano(), []uint64{1, 3}) {
		t.Errorf("match event %v: want rule burst, subject 1, the deterministic ID", ev)
	}
	// The partial match of pid 2 survives a restart.
	e2, err := NewEngine(mustParse(t, burstRules), s.options())
	if err != nil {
		t.Fatal(err)
	}
	publish(t, s.m, fsEv(4, "fs.delete", "/e", 2))
	runUntil(t, e2, func() bool { return e2.Stats().Cursor >= 7 })
	if st := e2.Stats(); st.Published != 1 || st.Skipped != 0 {
		t.Errorf("after restart: %+v, want 1 published, 0 skipped", st)
	}
	if got := matchesIn(t, s.all(t)); len(got) != 2 || !slices.Equal(got[1].Seqs, []uint64{4, 6}) {
		t.Errorf("matches after restart %+v, want a second one of seqs 4, 6", got)
	}
}

// TestEngineCrashBeforeCheckpoint: when the checkpoint is older than the
// matches published (a crash between publishing and checkpointing), the
// replay recomputes them and does not publish them again.
func TestEngineCrashBeforeCheckpoint(t *testing.T) {
	s := openStream(t, t.TempDir())
	opts := s.options()
	opts.CheckpointEvery = time.Hour
	e, err := NewEngine(mustParse(t, burstRules), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Checkpoint(); err != nil { // cursor 0, empty state
		t.Fatal(err)
	}
	old, err := os.ReadFile(filepath.Join(opts.Dir, checkpointFile))
	if err != nil {
		t.Fatal(err)
	}
	publish(t, s.m, fsEv(0, "fs.delete", "/a", 1), fsEv(1, "fs.delete", "/b", 1), fsEv(2, "fs.delete", "/c", 1),
		fsEv(3, "fs.delete", "/d", 1))
	runUntil(t, e, func() bool { return e.Stats().Cursor >= 6 })
	if n := len(matchesIn(t, s.all(t))); n != 2 {
		t.Fatalf("%d matches, want 2", n)
	}
	// The crash: the checkpoint on disk is the one before the matches.
	if err := os.WriteFile(filepath.Join(opts.Dir, checkpointFile), old, 0o644); err != nil {
		t.Fatal(err)
	}
	publish(t, s.m, fsEv(4, "fs.delete", "/e", 1), fsEv(5, "fs.delete", "/f", 1))
	e2, err := NewEngine(mustParse(t, burstRules), opts)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, e2, func() bool { return e2.Stats().Cursor >= 9 })
	got := matchesIn(t, s.all(t))
	var seqs [][]uint64
	for _, m := range got {
		seqs = append(seqs, m.Seqs)
	}
	want := [][]uint64{{1, 2}, {3, 4}, {7, 8}}
	if diff := cmp.Diff(want, seqs); diff != "" {
		t.Errorf("match seqs after the crash (-want +got):\n%s", diff)
	}
	if st := e2.Stats(); st.Skipped != 2 || st.Published != 1 {
		t.Errorf("stats %+v, want 2 skipped, 1 published", st)
	}
}

// TestEngineLoopProtection: rules on matches stop at the depth limit and
// never see their own output.
func TestEngineLoopProtection(t *testing.T) {
	s := openStream(t, t.TempDir())
	set := mustParse(t, `
rules:
  - name: w
    when: 'type == "fs.write"'
  - name: echo-a
    when: 'type == "semprop.rule.match"'
  - name: echo-b
    when: 'type == "semprop.rule.match"'
`)
	publish(t, s.m, fsEv(0, "fs.write", "/a", 1))
	e, err := NewEngine(set, s.options())
	if err != nil {
		t.Fatal(err)
	}
	// w (depth 1); echo-a and echo-b of it (2); each echoes the other's
	// (3); depth 3 is shown to no rule.
	runUntil(t, e, func() bool { return e.Stats().Published >= 5 && e.Stats().Cursor >= 6 })
	time.Sleep(50 * time.Millisecond)
	var got []string
	for _, ev := range s.all(t)[1:] {
		r, _ := ev.Attr(AttrRule)
		d, _ := ev.Attr(AttrDepth)
		got = append(got, r+"@"+d)
	}
	want := []string{"w@1", "echo-a@2", "echo-b@2", "echo-b@3", "echo-a@3"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("published (-want +got):\n%s", diff)
	}
}

// TestEngineReload: a reload keeps the partial match of an unchanged rule
// and resets a changed one; disabling a rule stops its matches.
func TestEngineReload(t *testing.T) {
	s := openStream(t, t.TempDir())
	set := mustParse(t, burstRules+`
  - name: pair
    when: 'type == "fs.delete"'
    count: 2
`)
	e, err := NewEngine(set, s.options())
	if err != nil {
		t.Fatal(err)
	}
	publish(t, s.m, fsEv(0, "fs.delete", "/a", 1))
	runUntil(t, e, func() bool { return e.Stats().Cursor >= 1 })
	changed := mustParse(t, burstRules+`
  - name: pair
    when: 'type == "fs.delete"'
    count: 2
    severity: warning
  - name: new
    when: 'type == "fs.write"'
`)
	if err := e.Reload(changed); err != nil {
		t.Fatal(err)
	}
	if err := e.SetEnabled("new", false); err != nil {
		t.Fatal(err)
	}
	if err := e.SetEnabled("nosuch", false); err == nil {
		t.Error("SetEnabled of an unknown rule succeeded")
	}
	publish(t, s.m, fsEv(1, "fs.delete", "/b", 1), fsEv(2, "fs.write", "/c", 1))
	runUntil(t, e, func() bool { return e.Stats().Cursor >= 4 })
	var got []string
	for _, m := range matchesIn(t, s.all(t)) {
		got = append(got, m.Rule)
	}
	if diff := cmp.Diff([]string{"burst"}, got); diff != "" {
		t.Errorf("rules that matched (-want +got):\n%s", diff)
	}
	infos := e.Rules()
	if len(infos) != 3 || infos[0].Counters.Matches != 1 || infos[1].Counters.Events != 1 || infos[2].Enabled {
		t.Errorf("rules %+v: want burst with 1 match, pair with 1 event since the reload, new disabled", infos)
	}
}

// TestEngineIdleAdvance: on a quiet stream, absent timers fire from the
// wall clock.
func TestEngineIdleAdvance(t *testing.T) {
	s := openStream(t, t.TempDir())
	set := mustParse(t, `
rules:
  - name: quiet
    absent: 'type == "fs.write"'
    for: 1m
`)
	opts := s.options()
	opts.IdleAdvance = 20 * time.Millisecond
	opts.Now = func() time.Time { return goldenBase.Add(time.Hour) }
	publish(t, s.m, fsEv(0, "fs.write", "/a", 1))
	e, err := NewEngine(set, opts)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, e, func() bool { return e.Stats().Published >= 1 })
	got := matchesIn(t, s.all(t))
	if len(got) != 1 || !got[0].Time.Equal(goldenBase.Add(time.Minute)) || !slices.Equal(got[0].Seqs, []uint64{1}) {
		t.Errorf("matches %+v, want quiet at 1m after seq 1", got)
	}
}

func TestNewEngineNeedsOptions(t *testing.T) {
	if _, err := NewEngine(&Set{}, Options{}); err == nil {
		t.Error("NewEngine without options succeeded")
	}
}

func TestCollector(t *testing.T) {
	s := openStream(t, t.TempDir())
	publish(t, s.m, fsEv(0, "fs.delete", "/a", 1), fsEv(1, "fs.delete", "/b", 1))
	e, err := NewEngine(mustParse(t, burstRules), s.options())
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, e, func() bool { return e.Stats().Cursor >= 3 })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.Collector())
	want := `
# HELP semprop_rule_matches_total Matches published.
# TYPE semprop_rule_matches_total counter
semprop_rule_matches_total{rule="burst"} 1
# HELP semprop_rules_published_total Rule events published.
# TYPE semprop_rules_published_total counter
semprop_rules_published_total 1
# HELP semprop_rule_events_total Events shown to the rule.
# TYPE semprop_rule_events_total counter
semprop_rule_events_total{rule="burst"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"semprop_rule_matches_total", "semprop_rules_published_total", "semprop_rule_events_total"); err != nil {
		t.Error(err)
	}
}

// TestEngineConcurrentUse: Rules, Stats, Reload, SetEnabled and Checkpoint
// while Run matches (run with -race).
func TestEngineConcurrentUse(t *testing.T) {
	s := openStream(t, t.TempDir())
	set := mustParse(t, burstRules)
	e, err := NewEngine(set, s.options())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			e.Rules()
			e.Stats()
			if err := e.Checkpoint(); err != nil {
				t.Error(err)
			}
			if err := e.Reload(set); err != nil {
				t.Error(err)
			}
			if err := e.SetEnabled("burst", i%2 == 0); err != nil {
				t.Error(err)
			}
		}
	}()
	for i := range 200 {
		publish(t, s.m, fsEv(float64(i)/10, "fs.delete", "/x", int32(i%3)))
	}
	for deadline := time.Now().Add(20 * time.Second); e.Stats().Cursor < 200; {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			cancel()
			t.Fatalf("not caught up: %+v (Run: %v)", e.Stats(), <-done)
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatal(err)
	}
}
