package action

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/audit"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/rules"
)

const (
	crashDirEnv   = "SEMPROP_ACTION_CRASH_DIR"
	crashFinalEnv = "SEMPROP_ACTION_CRASH_FINAL"
)

// crashRules are the actions TestSIGKILL runs for every match: the
// webhook target refuses matches whose key contains "bad", and the
// program times out for keys that contain "slow", so their earlier
// actions are rolled back.
const crashRules = `
rules:
  - name: r
    when: 'true'
    actions:
      - {type: tag, path: '{{.First.Subject}}', name: seen, value: '{{.Key}}'}
      - {type: snapshot, paths: '{{.First.Subject}}'}
      - {type: quarantine, path: '{{.First.Subject}}'}
      - type: exec
        argv: [/bin/sh, -c, 'case $SEMPROP_KEY in *slow*) sleep 5;; esac; echo "run $SEMPROP_IDEMPOTENCY_KEY" >> DIR/exec.log']
        timeout: 300ms
        rollback: [/bin/sh, -c, 'echo "undo $SEMPROP_IDEMPOTENCY_KEY" >> DIR/exec.log']
      - {type: webhook, url: 'URL', retries: 2, backoff: 5ms, timeout: 2s}
      - {type: emit, event_type: test.done}
`

// crashFixture opens what the child and the final check share.
func crashFixture(t *testing.T, dir string) (*stream, *audit.Log, *Env) {
	t.Helper()
	s := openStream(t, filepath.Join(dir, "data"), journal.FsyncNever)
	log, err := audit.Open(filepath.Join(dir, "data", "audit"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	roots, err := NewRoots(filepath.Join(dir, "root"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := OpenStore(filepath.Join(dir, "data", "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	return s, log, &Env{Roots: roots, Snapshots: store, QuarantineDir: filepath.Join(dir, "data", "quarantine")}
}

// TestCrashChild is the process TestSIGKILL starts and kills.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("the process that TestSIGKILL starts")
	}
	s, log, env := crashFixture(t, dir)
	set, err := rules.Load(filepath.Join(dir, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	x, err := New(set, Options{Dir: filepath.Join(dir, "data", "actions"), Audit: log, Open: s.open, Publisher: s.m, Env: env, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if os.Getenv(crashFinalEnv) != "" {
		go func() {
			for range time.Tick(20 * time.Millisecond) {
				if x.Stats().Cursor >= s.j.LastSeq() {
					cancel()
					return
				}
			}
		}()
	}
	if err := x.Run(ctx); err != context.Canceled {
		t.Fatal(err)
	}
	st := x.Stats()
	fmt.Printf("STATS %d %d %d %d\n", st.Rollbacks, st.RollbacksOK, st.Recovered, st.Interrupted)
}

// receiver is a webhook target that counts deliveries by ce-id.
type receiver struct {
	mu      sync.Mutex
	count   map[string]int // 2xx deliveries by ce-id
	down    bool           // the target is down: every request fails
	refused int            // requests refused while down
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var d struct{ Key string }
	json.Unmarshal(body, &d)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.down {
		rc.refused++
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	if strings.Contains(d.Key, "bad") {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	rc.count[r.Header.Get("ce-id")]++
	w.WriteHeader(http.StatusNoContent)
}

// TestSIGKILL kills the executor's process 50 times while it works
// through matches whose actions touch files, run a program, call a
// webhook and publish events. In the end every action is done or rolled
// back and audited, none is lost, none ran twice.
func TestSIGKILL(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("in the child")
	}
	kills := 50
	if testing.Short() {
		kills = 10
	}
	dir := t.TempDir()
	rc := &receiver{count: map[string]int{}}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	yaml := strings.NewReplacer("URL", srv.URL, "DIR", dir).Replace(crashRules)
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	os.MkdirAll(root, 0o755)
	const n = 120
	s, log, _ := crashFixture(t, dir)
	keys := map[string]string{} // match ID -> key
	for i := range n {
		key := fmt.Sprintf("f%d", i)
		if i%4 == 0 {
			key += "-bad"
		}
		if i%7 == 3 {
			key += "-slow"
		}
		p := filepath.Join(root, key)
		os.WriteFile(p, []byte("content of "+key), 0o644)
		seq := publish(t, s.m, fsEvent("fs.write", p, int32(i)))
		mev := matchEvent("r", key, []uint64{seq}, i)
		publish(t, s.m, mev)
		keys[mev.ID.String()] = key
	}
	last := s.j.LastSeq()
	s.close()
	log.Close()

	child := func(final bool) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		if final {
			cmd.Env = append(cmd.Env, crashFinalEnv+"=1")
		}
		return cmd
	}
	r := rand.New(rand.NewPCG(3, 4))
	for k := range kills {
		rc.mu.Lock()
		rc.down = k >= kills/5 && k < kills/2 // down for a while
		rc.mu.Unlock()
		cmd := child(false)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		time.Sleep(time.Duration(100+r.IntN(300)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	rc.mu.Lock()
	rc.down = false
	rc.mu.Unlock()
	beforeFinal, _ := audit.Verify(filepath.Join(dir, "data", "audit"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := child(true)
	final := exec.CommandContext(ctx, c.Path, c.Args[1:]...)
	final.Env = c.Env
	out, err := final.CombinedOutput()
	if err != nil {
		t.Fatalf("final run: %v\n%s", err, out)
	}

	// The chain is intact.
	if _, err := audit.Verify(filepath.Join(dir, "data", "audit")); err != nil {
		t.Fatalf("audit: %v", err)
	}
	s, log, env := crashFixture(t, dir)
	recs := records(t, log.Dir())
	type acts struct {
		intents, dones, fails, rbs, rbOK, rbFail map[int]int
		final                                    []string
	}
	by := map[string]*acts{}
	recoveredN, interruptedN, intentsSeen := 0, 0, map[string]int{}
	for _, rec := range recs {
		if rec.Outcome == "recovered" {
			recoveredN++
		}
		if rec.Kind == audit.KindInterrupted {
			interruptedN++
		}
		if rec.Kind == audit.KindRollback {
			intentsSeen[rec.Key]++
		}
		a := by[rec.Match]
		if a == nil {
			a = &acts{intents: map[int]int{}, dones: map[int]int{}, fails: map[int]int{}, rbs: map[int]int{}, rbOK: map[int]int{}, rbFail: map[int]int{}}
			by[rec.Match] = a
		}
		switch rec.Kind {
		case audit.KindIntent:
			a.intents[rec.Index]++
		case audit.KindDone:
			a.dones[rec.Index]++
		case audit.KindFailed, audit.KindInterrupted:
			a.fails[rec.Index]++
		case audit.KindRollback:
			a.rbs[rec.Index]++
		case audit.KindRolledBack:
			a.rbOK[rec.Index]++
		case audit.KindRollbackFailed:
			a.rbFail[rec.Index]++
		case audit.KindMatch:
			a.final = append(a.final, rec.Outcome)
		}
	}
	execLog, _ := os.ReadFile(filepath.Join(dir, "exec.log"))
	runs := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(execLog))
	for sc.Scan() {
		runs[sc.Text()]++
	}
	var rolledBack, failedMatches, okMatches, interrupted, rollbacks, rollbacksOK int
	for id, key := range keys {
		a := by[id]
		if a == nil || len(a.final) != 1 {
			t.Errorf("match %s: outcome records %v, want exactly one", key, a)
			continue
		}
		for i := range 6 {
			if a.dones[i] > 1 || a.fails[i] > 1 || a.dones[i]+a.fails[i] > 1 {
				t.Errorf("match %s action %d: %d done, %d failed records", key, i, a.dones[i], a.fails[i])
			}
			if a.intents[i] > 1 {
				t.Errorf("match %s action %d: %d intents", key, i, a.intents[i])
			}
			if a.intents[i] == 1 && a.dones[i]+a.fails[i] == 0 {
				t.Errorf("match %s action %d: in flight at the end", key, i)
			}
			if a.rbOK[i]+a.rbFail[i] > 1 {
				t.Errorf("match %s action %d: rolled back %d times", key, i, a.rbOK[i]+a.rbFail[i])
			}
			rollbacks += a.rbOK[i] + a.rbFail[i]
			rollbacksOK += a.rbOK[i]
		}
		xkey := fmt.Sprintf("r/%s/3", id)
		if runs["run "+xkey] > 1 {
			t.Errorf("match %s: exec ran %d times", key, runs["run "+xkey])
		}
		p := filepath.Join(root, key)
		data, err := os.ReadFile(p)
		_, tagged := xattrOK(p, "user.seen")
		switch a.final[0] {
		case OutcomeOK:
			okMatches++
			if strings.Contains(key, "bad") || strings.Contains(key, "slow") {
				t.Errorf("match %s: ok, but its webhook or its program always fails", key)
			}
			if err == nil {
				t.Errorf("match %s: ok but the file was not quarantined", key)
			}
			if rc.count[fmt.Sprintf("r/%s/4", id)] == 0 {
				t.Errorf("match %s: ok but the webhook was never delivered", key)
			}
		case OutcomeRolledBack, OutcomeFailed:
			if a.final[0] == OutcomeFailed && a.rbFail[3] == 0 {
				t.Errorf("match %s: failed without an interrupted rollback", key)
			}
			rolledBack++
			if a.final[0] == OutcomeFailed {
				failedMatches++
			}
			if err != nil || string(data) != "content of "+key || tagged {
				t.Errorf("match %s: rolled back, but the file is %q (%v), tagged %v", key, data, err, tagged)
			}
			if runs["undo "+xkey] > 1 || (a.rbOK[3] == 1 && runs["undo "+xkey] != 1) {
				t.Errorf("match %s: exec rolled back, but its rollback program ran %d times", key, runs["undo "+xkey])
			}
			for i := range 6 {
				if a.fails[i] > 0 && a.dones[i] == 0 && i == 3 {
					interrupted++
				}
			}
		default:
			t.Errorf("match %s: outcome %s", key, a.final[0])
		}
	}
	// Webhooks: one delivered id per done webhook action (the receiver
	// de-duplicates by ce-id; deliveries of one id can repeat after a
	// crash in flight).
	deliveries, dupIDs := 0, 0
	for _, c := range rc.count {
		deliveries += c
		if c > 1 {
			dupIDs++
		}
	}
	webhooksDone := 0
	for _, a := range by {
		webhooksDone += a.dones[4]
	}
	if len(rc.count) != webhooksDone {
		t.Errorf("%d webhook ids delivered, %d webhook actions done", len(rc.count), webhooksDone)
	}
	// Events: each emitted and outcome event once.
	ids := map[string]int{}
	emitted, outcomes := 0, 0
	for _, ev := range s.all(t) {
		switch {
		case ev.Type == "test.done":
			emitted++
		case strings.HasPrefix(ev.Type, "semprop.action."):
			outcomes++
		default:
			continue
		}
		if ids[ev.ID.String()]++; ids[ev.ID.String()] > 1 {
			t.Errorf("event %s %s published twice", ev.Type, ev.ID)
		}
	}
	emitsDone := 0
	for _, a := range by {
		emitsDone += a.dones[5]
	}
	if emitted != emitsDone || outcomes != n {
		t.Errorf("%d test.done events for %d emits done; %d outcome events for %d matches", emitted, emitsDone, outcomes, n)
	}
	rc.mu.Lock()
	refused := rc.refused
	rc.mu.Unlock()
	if okMatches+rolledBack != n || rolledBack < n/4 {
		t.Errorf("%d ok, %d rolled back of %d", okMatches, rolledBack, n)
	}
	_ = env
	_ = last
	t.Logf("%d SIGKILLs; %d matches: %d ok, %d rolled back or failed (%d failed: an exec rollback interrupted; %d after a failed exec: timed out or interrupted); rollbacks %d/%d succeeded; "+
		"webhooks: %d ids, %d deliveries, %d ids delivered more than once; %d audit records (%d written before the final run); "+
		"in flight at a kill: %d found done, %d interrupted; %d webhook requests refused while the target was down",
		kills, n, okMatches, rolledBack, failedMatches, interrupted, rollbacksOK, rollbacks, len(rc.count), deliveries, dupIDs, len(recs), beforeFinal,
		recoveredN, interruptedN, refused)
	// Every rollback succeeds but an exec rollback program in flight at a
	// kill, which is never run twice.
	execRBInterrupted := 0
	for _, a := range by {
		execRBInterrupted += a.rbFail[3]
	}
	if rollbacks-rollbacksOK != execRBInterrupted {
		t.Errorf("rollback success rate %d/%d, %d exec rollbacks interrupted", rollbacksOK, rollbacks, execRBInterrupted)
	}
}

func xattrOK(path, name string) (string, bool) {
	buf := make([]byte, 256)
	n, err := syscall.Getxattr(path, name, buf)
	if err != nil {
		return "", false
	}
	return string(buf[:n]), true
}
