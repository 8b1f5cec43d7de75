package action

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/audit"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
	"github.com/semprop/semprop/internal/rules"
)

var quiet = slog.New(slog.DiscardHandler)

// stream is a journal and a manager in a directory.
type stream struct {
	dir string
	j   *journal.Journal
	m   *propagate.Manager
}

func openStream(t testing.TB, dir string, fsync journal.FsyncPolicy) *stream {
	t.Helper()
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: fsync, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Source: "semprop://test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s := &stream{dir: dir, j: j, m: m}
	t.Cleanup(s.close)
	return s
}

func (s *stream) close() {
	if s.m != nil {
		s.m.Close()
		s.j.Close()
		s.m, s.j = nil, nil
	}
}

func (s *stream) open(from uint64) (Source, error) {
	r, err := s.m.Reader(from)
	if err != nil {
		return nil, err
	}
	return r, nil
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

func publish(t testing.TB, m *propagate.Manager, ev *event.Event) uint64 {
	t.Helper()
	seq, err := m.Publish(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// matchEvent builds a semprop.rule.match event of rule over seqs.
func matchEvent(rule, key string, seqs []uint64, n int) *event.Event {
	d := rules.MatchData{Rule: rule, Key: key, Seqs: seqs, Message: rule + " fired", Time: time.Unix(int64(n), 0).UTC()}
	ev := &event.Event{Type: rules.TypeMatch, Subject: key, Time: d.Time, DataContentType: "application/json"}
	ev.ID = rules.MatchID(rules.TypeMatch, rule, key, int64(n), seqs)
	ev.SetAttr(rules.AttrRule, rule)
	ev.SetAttr(rules.AttrSeverity, "critical")
	ev.SetAttr(rules.AttrDepth, "1")
	ev.Data, _ = json.Marshal(d)
	return ev
}

func fsEvent(typ, subject string, pid int32) *event.Event {
	ev := &event.Event{Type: typ, Subject: subject}
	ev.Context.SetPID(pid)
	return ev
}

func mustRules(t testing.TB, yaml string) *rules.Set {
	t.Helper()
	set, err := rules.Parse("rules.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// runUntil runs x until its cursor reaches the journal's last seq.
func runUntil(t testing.TB, x *Executor, s *stream) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	deadline := time.After(30 * time.Second)
	for x.Stats().Cursor < s.j.LastSeq() {
		select {
		case err := <-done:
			t.Fatalf("Run = %v before catching up", err)
		case <-deadline:
			t.Fatalf("executor stuck at %d of %d", x.Stats().Cursor, s.j.LastSeq())
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
}

// records reads the audit log.
func records(t testing.TB, dir string) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	if err := audit.Read(dir, func(r *audit.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// fixture is a root with files, a data directory and an executor's options.
type fixture struct {
	root, data string
	s          *stream
	log        *audit.Log
	env        *Env
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	base := t.TempDir()
	f := &fixture{root: filepath.Join(base, "root"), data: filepath.Join(base, "data")}
	for _, d := range []string{f.root, f.data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.s = openStream(t, f.data, journal.FsyncNever)
	var err error
	if f.log, err = audit.Open(filepath.Join(f.data, "audit"), quiet); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.log.Close() })
	roots, err := NewRoots(f.root)
	if err != nil {
		t.Fatal(err)
	}
	store, err := OpenStore(filepath.Join(f.data, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	f.env = &Env{Roots: roots, Snapshots: store, QuarantineDir: filepath.Join(f.data, "quarantine"), Signals: true}
	return f
}

func (f *fixture) executor(t *testing.T, set *rules.Set) *Executor {
	t.Helper()
	x, err := New(set, Options{Dir: filepath.Join(f.data, "actions"), Audit: f.log, Open: f.s.open, Publisher: f.s.m,
		Env: f.env, Source: "semprop://test/actions", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func (f *fixture) file(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(f.root, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
