package action

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/internal/audit"
	"github.com/semprop/semprop/internal/rules"
)

func xattr(t *testing.T, path, name string) (string, bool) {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Getxattr(path, name, buf)
	if errors.Is(err, unix.ENODATA) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n]), true
}

func kinds(recs []*audit.Record) []string {
	var out []string
	for _, r := range recs {
		k := r.Kind
		if r.Kind != audit.KindMatch {
			k += ":" + r.Type
		} else {
			k += ":" + r.Outcome
		}
		out = append(out, k)
	}
	return out
}

// TestExecutorOK: every action of a match runs, in order, with its
// arguments rendered over the matched events; the audit trail holds an
// intent and an outcome for each, and a semprop.action.ok event is
// published.
func TestExecutorOK(t *testing.T) {
	f := newFixture(t)
	a := f.file(t, "a.txt", "alpha")
	b := f.file(t, "sub/b.txt", "bravo")
	out := filepath.Join(t.TempDir(), "out")
	set := mustRules(t, `
rules:
  - name: burst
    when: 'type == "fs.write"'
    actions:
      - {type: snapshot, paths: '{{range .Events}}{{.Subject}} {{end}}'}
      - {type: tag, path: '{{.Last.Subject}}', name: semprop.flag, value: '{{.Rule}}'}
      - {type: quarantine, path: '{{.First.Subject}}'}
      - {type: emit, event_type: alert.burst, data: '{"n": {{len .Events}}}'}
      - type: exec
        argv: [/bin/sh, -c, 'echo "$SEMPROP_RULE $SEMPROP_SEQS $HOME" > `+out+`; echo said', '{{.Key}}']
`)
	s1 := publish(t, f.s.m, fsEvent("fs.write", a, 7))
	s2 := publish(t, f.s.m, fsEvent("fs.write", b, 7))
	mev := matchEvent("burst", "7", []uint64{s1, s2}, 1)
	publish(t, f.s.m, mev)
	x := f.executor(t, set)
	runUntil(t, x, f.s)

	if _, err := os.Stat(a); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there after quarantine: %v", a, err)
	}
	qname := filepath.Join(f.env.QuarantineDir, SnapshotID("burst/"+mev.ID.String()+"/2")+"-a.txt")
	if data, err := os.ReadFile(qname); err != nil || string(data) != "alpha" {
		t.Errorf("quarantined file = %q, %v", data, err)
	}
	if v, ok := xattr(t, b, "user.semprop.flag"); !ok || v != "burst" {
		t.Errorf("tag = %q, %v; want burst", v, ok)
	}
	m, err := f.env.Snapshots.Manifest(SnapshotID("burst/" + mev.ID.String() + "/0"))
	if err != nil || len(m.Files) != 2 {
		t.Fatalf("snapshot manifest = %+v, %v", m, err)
	}
	if data, err := os.ReadFile(out); err != nil || strings.TrimSpace(string(data)) != "burst 1,2" {
		t.Errorf("exec wrote %q, %v; want \"burst 1,2\" (HOME not passed)", data, err)
	}
	recs := records(t, f.log.Dir())
	want := []string{"intent:snapshot", "done:snapshot", "intent:tag", "done:tag", "intent:quarantine", "done:quarantine",
		"intent:emit", "done:emit", "intent:exec", "done:exec", "match:ok"}
	if diff := cmp.Diff(want, kinds(recs)); diff != "" {
		t.Fatalf("audit (-want +got):\n%s", diff)
	}
	var er execResult
	json.Unmarshal(recs[9].Result, &er)
	if er.Output != "said\n" || er.Exit != 0 {
		t.Errorf("exec result = %+v, want its output captured", er)
	}
	if got := recs[0].Preconditions; len(got) != 2 || !got[0].OK {
		t.Errorf("snapshot preconditions = %+v", got)
	}
	var alerts, oks int
	for _, ev := range f.s.all(t) {
		switch ev.Type {
		case "alert.burst":
			alerts++
			if string(ev.Data) != `{"n": 2}` || attr(ev, rules.AttrRule) != "burst" || attr(ev, rules.AttrDepth) != "1" {
				t.Errorf("emitted %s", ev)
			}
		case TypeOK:
			oks++
			var d OutcomeData
			json.Unmarshal(ev.Data, &d)
			if d.Outcome != "ok" || d.Match != mev.ID.String() || d.FailedIndex != -1 {
				t.Errorf("outcome data = %+v", d)
			}
		}
	}
	if alerts != 1 || oks != 1 {
		t.Errorf("%d alert events, %d ok events; want 1, 1", alerts, oks)
	}
	if st := x.Stats(); st.Done != 5 || st.OK != 1 || st.Matches != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// TestExecutorRollback: when an action fails after its retries, the ones
// done are rolled back in reverse: the tag is removed, the file comes
// back from quarantine; the outcome is semprop.action.rolledback.
func TestExecutorRollback(t *testing.T) {
	f := newFixture(t)
	a := f.file(t, "a.txt", "alpha")
	if err := unix.Setxattr(a, "user.keep", []byte("old"), 0); err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	set := mustRules(t, `
rules:
  - name: r
    when: 'true'
    actions:
      - {type: tag, path: '{{.First.Subject}}', name: keep, value: new}
      - {type: tag, path: '{{.First.Subject}}', name: fresh, value: x}
      - {type: quarantine, path: '{{.First.Subject}}'}
      - {type: webhook, url: '`+srv.URL+`', retries: 2, backoff: 1ms, timeout: 1s}
      - {type: emit, event_type: never}
`)
	s1 := publish(t, f.s.m, fsEvent("fs.write", a, 1))
	publish(t, f.s.m, matchEvent("r", "", []uint64{s1}, 1))
	x := f.executor(t, set)
	runUntil(t, x, f.s)
	if data, err := os.ReadFile(a); err != nil || string(data) != "alpha" {
		t.Fatalf("file after rollback = %q, %v; want it back", data, err)
	}
	if v, _ := xattr(t, a, "user.keep"); v != "old" {
		t.Errorf("user.keep = %q after rollback, want old", v)
	}
	if _, ok := xattr(t, a, "user.fresh"); ok {
		t.Errorf("user.fresh still set after rollback")
	}
	if hits.Load() != 3 {
		t.Errorf("webhook tried %d times, want 3 (1 + 2 retries)", hits.Load())
	}
	want := []string{"intent:tag", "done:tag", "intent:tag", "done:tag", "intent:quarantine", "done:quarantine",
		"intent:webhook", "failed:webhook",
		"rollback:quarantine", "rolledback:quarantine", "rollback:tag", "rolledback:tag", "rollback:tag", "rolledback:tag",
		"match:rolledback"}
	if diff := cmp.Diff(want, kinds(records(t, f.log.Dir()))); diff != "" {
		t.Fatalf("audit (-want +got):\n%s", diff)
	}
	var got []string
	for _, ev := range f.s.all(t) {
		if strings.HasPrefix(ev.Type, "semprop.action.") || ev.Type == "never" {
			got = append(got, ev.Type)
		}
	}
	if diff := cmp.Diff([]string{TypeRolledBack}, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if st := x.Stats(); st.Rollbacks != 3 || st.RollbacksOK != 3 {
		t.Errorf("stats = %+v, want 3 rollbacks, all ok", st)
	}
}

// TestExecutorPrecondition: a failed precondition is audited with its
// checks, and nothing runs.
func TestExecutorPrecondition(t *testing.T) {
	f := newFixture(t)
	set := mustRules(t, `
rules:
  - name: r
    when: 'true'
    actions:
      - {type: quarantine, path: '/etc/passwd'}
`)
	publish(t, f.s.m, matchEvent("r", "", nil, 1))
	x := f.executor(t, set)
	runUntil(t, x, f.s)
	recs := records(t, f.log.Dir())
	if diff := cmp.Diff([]string{"failed:quarantine", "match:failed"}, kinds(recs)); diff != "" {
		t.Fatalf("audit (-want +got):\n%s", diff)
	}
	if c := recs[0].Preconditions; len(c) != 1 || c[0].OK || !strings.Contains(recs[0].Error, "outside the configured roots") {
		t.Errorf("record = %+v", recs[0])
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Fatal(err)
	}
}

// TestExecutorIgnoresOthers: matches of rules without actions and other
// events leave no audit record.
func TestExecutorIgnoresOthers(t *testing.T) {
	f := newFixture(t)
	set := mustRules(t, "rules:\n  - name: r\n    when: 'true'\n")
	publish(t, f.s.m, fsEvent("fs.write", "/x", 1))
	publish(t, f.s.m, matchEvent("r", "", nil, 1))
	publish(t, f.s.m, matchEvent("gone", "", nil, 1))
	runUntil(t, f.executor(t, set), f.s)
	if recs := records(t, f.log.Dir()); len(recs) != 0 {
		t.Errorf("audit has %d records, want 0", len(recs))
	}
}

// TestCheck: rule files with bad actions are refused with file and line.
func TestCheck(t *testing.T) {
	reg := NewRegistry()
	for _, tc := range []struct{ actions, want string }{
		{"      - {type: nosuch}\n", `rules.yaml:5: rule "r": action 1 (nosuch): want one of emit, exec, quarantine, quarantine-process, signal, snapshot, tag, webhook`},
		{"      - {type: webhook}\n", `rules.yaml:5: rule "r": action 1 (webhook): url is required`},
		{"      - {type: emit, event_type: a, colour: red}\n", `rules.yaml:5: rule "r": action 1 (emit): unknown argument "colour"`},
		{"      - {type: emit, event_type: a}\n      - {type: webhook, url: 'http://x', timeout: soon}\n", `rules.yaml:6: rule "r": action 2 (webhook): timeout: "soon"`},
		{"      - {type: webhook, url: [a]}\n", `rules.yaml:5: rule "r": action 1 (webhook): url: want a string, not a list`},
		{"      - {type: signal, pid: -1}\n", `rules.yaml:5: rule "r": action 1 (signal): pid: "-1"`},
	} {
		set := mustRules(t, "rules:\n  - name: r\n    when: 'true'\n    actions:\n"+tc.actions)
		err := reg.Check(set)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%q) = %v, want %q", tc.actions, err, tc.want)
		}
	}
	if err := reg.Check(mustRules(t, "rules:\n  - name: r\n    when: 'true'\n    actions:\n      - {type: webhook, url: 'http://x', timeout: '{{.Key}}'}\n")); err != nil {
		t.Errorf("Check of a templated value = %v", err)
	}
}

// TestExecutorStopFinishesMatch: a stop while a match's actions run lets
// the match finish (within StopGrace) instead of leaving it in flight.
func TestExecutorStopFinishesMatch(t *testing.T) {
	f := newFixture(t)
	a := f.file(t, "a", "x")
	set := mustRules(t, `
rules:
  - name: r
    when: 'true'
    actions:
      - {type: exec, argv: [/bin/sleep, '0.3']}
      - {type: tag, path: '`+a+`', name: n, value: v}
`)
	publish(t, f.s.m, matchEvent("r", "", nil, 1))
	x := f.executor(t, set)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	for len(records(t, f.log.Dir())) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel() // while the program sleeps
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run = %v", err)
	}
	if diff := cmp.Diff([]string{"intent:exec", "done:exec", "intent:tag", "done:tag", "match:ok"}, kinds(records(t, f.log.Dir()))); diff != "" {
		t.Fatalf("audit (-want +got):\n%s", diff)
	}
}

// TestActionEventsKeepMatchTime: outcome and emitted events carry the
// match's event time, not the wall clock at which the actions ran: an
// event time ahead of the stream would move the rules' watermark and
// make the file-system events journaled after it late.
func TestActionEventsKeepMatchTime(t *testing.T) {
	f := newFixture(t)
	set := mustRules(t, "rules:\n  - name: r\n    when: 'true'\n    actions:\n      - {type: emit, event_type: alert.x}\n")
	mev := matchEvent("r", "", nil, 5)
	publish(t, f.s.m, mev)
	runUntil(t, f.executor(t, set), f.s)
	n := 0
	for _, ev := range f.s.all(t) {
		if ev.Type == "alert.x" || ev.Type == TypeOK {
			n++
			if !ev.Time.Equal(mev.Time) {
				t.Errorf("%s at %v, want the match's time %v", ev.Type, ev.Time, mev.Time)
			}
		}
	}
	if n != 2 {
		t.Errorf("%d action events, want 2", n)
	}
}
