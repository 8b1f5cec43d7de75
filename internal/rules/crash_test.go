package rules

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

const (
	crashDirEnv   = "SEMPROP_RULES_CRASH_DIR"
	crashFinalEnv = "SEMPROP_RULES_CRASH_FINAL"
)

const crashRules = `
rules:
  - name: burst
    when: 'type == "fs.delete"'
    count: 3
    within: 1s
    by: pid
  - name: edit-then-delete
    sequence:
      - {as: w, when: 'type == "fs.write"'}
      - {when: 'type == "fs.delete" && subject == w.subject'}
    within: 2s
    by: subject
  - name: lock-left-behind
    when: 'type == "fs.create" && subject endsWith ".lock"'
    not_followed_by: 'type == "fs.delete" && subject == first.subject'
    within: 1s
  - name: quiet
    absent: 'type == "fs.write"'
    for: 2s
    by: subject
`

// TestCrashChild is the process TestSIGKILL starts and kills: it runs the
// engine over the journal in $SEMPROP_RULES_CRASH_DIR until killed, or,
// with $SEMPROP_RULES_CRASH_FINAL set, until it has caught up.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("the process that TestSIGKILL starts")
	}
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: journal.FsyncAlways, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Source: "semprop://test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	set, err := Load(filepath.Join(dir, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := &stream{dir: dir, j: j, m: m}
	e, err := NewEngine(set, s.options())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if os.Getenv(crashFinalEnv) != "" {
		go func() {
			stable := 0
			for range time.Tick(20 * time.Millisecond) {
				if e.Stats().Cursor == j.LastSeq() {
					stable++
				} else {
					stable = 0
				}
				if stable == 10 {
					cancel()
					return
				}
			}
		}()
	}
	if err := e.Run(ctx); err != context.Canceled {
		t.Fatal(err)
	}
}

// crashInput is a deterministic file-system workload for TestSIGKILL.
func crashInput(n int) []*event.Event {
	r := rand.New(rand.NewPCG(7, 11))
	types := []string{"fs.write", "fs.write", "fs.delete", "fs.create", "fs.open"}
	var evs []*event.Event
	for i := range n {
		typ := types[r.IntN(len(types))]
		subj := fmt.Sprintf("/d/f%d", r.IntN(20))
		if typ == "fs.create" || (typ == "fs.delete" && r.IntN(2) == 0) {
			subj = fmt.Sprintf("/d/l%d.lock", r.IntN(5))
		}
		ev := &event.Event{Type: typ, Subject: subj, Time: goldenBase.Add(time.Duration(i) * 50 * time.Millisecond)}
		ev.Context.SetPID(int32(1 + r.IntN(4)))
		evs = append(evs, ev)
	}
	return evs
}

// TestSIGKILL kills the engine's process repeatedly while it works through
// a journal; in the end the journal holds exactly the matches that `rules
// test` computes over the same events, in the same order, none twice.
func TestSIGKILL(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("in the child")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(crashRules), 0o644); err != nil {
		t.Fatal(err)
	}
	s := openStream(t, dir)
	var ndjson bytes.Buffer
	for _, ev := range crashInput(3000) {
		publish(t, s.m, ev)
		ndjson.Write(ev.AppendJSON(nil))
		ndjson.WriteByte('\n')
	}
	s.close()
	set, err := Load(filepath.Join(dir, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Test(&out, set, &ndjson, TestOptions{}); err != nil {
		t.Fatal(err)
	}
	var want []MatchData
	for line := range strings.Lines(out.String()) {
		var d MatchData
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatal(err)
		}
		want = append(want, d)
	}

	child := func(final bool) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		if final {
			cmd.Env = append(cmd.Env, crashFinalEnv+"=1")
		}
		return cmd
	}
	r := rand.New(rand.NewPCG(1, 2))
	var progress []uint64
	const kills = 8
	for range kills {
		cmd := child(false)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() }) // if the test stops early
		time.Sleep(time.Duration(100+r.IntN(300)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		var cp checkpoint
		if data, err := os.ReadFile(filepath.Join(dir, "rules", checkpointFile)); err == nil {
			json.Unmarshal(data, &cp)
		}
		progress = append(progress, cp.Cursor)
	}
	cmd := child(true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	final := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	final.Env = cmd.Env
	if out, err := final.CombinedOutput(); err != nil {
		t.Fatalf("final run: %v\n%s", err, out)
	}

	s = openStream(t, dir)
	evs := s.all(t)
	got := matchesIn(t, evs)
	ids := map[event.ID]bool{}
	for _, ev := range evs {
		if ev.Type == TypeMatch {
			if ids[ev.ID] {
				t.Errorf("match %v published twice", ev.ID)
			}
			ids[ev.ID] = true
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("matches in the journal differ from rules test (-want +got):\n%s", diff)
	}
	t.Logf("%d SIGKILLs, checkpoint cursor after each: %v; %d matches, none lost or repeated", kills, progress, len(got))
}
