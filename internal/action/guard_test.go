package action

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeGuard records the quarantine-process calls.
type fakeGuard struct {
	mu     sync.Mutex
	listed map[string]time.Time // "pid/uid/byUID" -> until
	calls  []string
}

func newFakeGuard() *fakeGuard { return &fakeGuard{listed: map[string]time.Time{}} }

func (g *fakeGuard) Quarantine(pid int32, uid uint32, byUID bool, until time.Time, reason string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := fmt.Sprintf("%d/%d/%v", pid, uid, byUID)
	g.listed[k] = until
	g.calls = append(g.calls, "quarantine "+k+" "+reason)
	return nil
}

func (g *fakeGuard) Release(pid int32, uid uint32, byUID bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := fmt.Sprintf("%d/%d/%v", pid, uid, byUID)
	g.calls = append(g.calls, "release "+k)
	if _, ok := g.listed[k]; !ok {
		return errors.New("guard: not on the guard list")
	}
	delete(g.listed, k)
	return nil
}

func (g *fakeGuard) keys() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var ks []string
	for k := range g.listed {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func sleepProc(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// TestQuarantineProcess: the pid of the matched events is listed for the
// for argument, with the uid the events carry; the rollback releases it;
// a process that exited before Execute is not listed and, alone, fails
// the action.
func TestQuarantineProcess(t *testing.T) {
	g := newFakeGuard()
	pid := sleepProc(t)
	ty, _ := NewRegistry().Lookup("quarantine-process")
	act, err := ty.New(&Call{Env: &Env{Guard: g}, Args: Args{"for": "90s"}, Key: "r/m/0",
		Match: &MatchView{Events: []EventView{{Pid: int32(pid), Uid: 1000}, {Pid: int32(pid), Uid: 1000}, {Pid: 0}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	checks, state, err := act.Validate(ctx)
	if err != nil || len(checks) != 1 || !checks[0].OK {
		t.Fatalf("Validate = %v, %v", checks, err)
	}
	res, err := act.Execute(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	k := fmt.Sprintf("%d/1000/false", pid)
	if got := g.keys(); !slices.Equal(got, []string{k}) {
		t.Fatalf("listed %v, want %s", got, k)
	}
	if until := g.listed[k]; until.Before(start.Add(89*time.Second)) || until.After(time.Now().Add(91*time.Second)) {
		t.Errorf("until = %v, want about 90s after %v", until, start)
	}
	if g.calls[0] != "quarantine "+k+" r/m/0" {
		t.Errorf("reason: %v", g.calls)
	}
	if _, err := act.Rollback(ctx, state, res); err != nil {
		t.Fatal(err)
	}
	if len(g.keys()) != 0 {
		t.Errorf("listed after the rollback: %v", g.keys())
	}
	// A second rollback (after a crash) is harmless.
	if _, err := act.Rollback(ctx, state, res); err != nil {
		t.Errorf("second Rollback = %v", err)
	}

	// The process exits between Validate and Execute.
	cmd := exec.Command("sleep", "60")
	cmd.Start()
	act, _ = ty.New(&Call{Env: &Env{Guard: g}, Args: Args{"pid": strconv.Itoa(cmd.Process.Pid)}, Key: "r/m/1"})
	_, state, err = act.Validate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := act.Execute(ctx, state); err == nil {
		t.Error("Execute of an exited process succeeded")
	}
	if len(g.keys()) != 0 {
		t.Errorf("an exited process was listed: %v", g.keys())
	}
}

// TestQuarantineProcessRefused: no guard, no pid, pid 1, semprop itself,
// a root process by uid, bad arguments.
func TestQuarantineProcessRefused(t *testing.T) {
	ty, _ := NewRegistry().Lookup("quarantine-process")
	g := newFakeGuard()
	self := strconv.Itoa(sleepProc(t)) // runs as the test's uid: root here, or not
	for _, c := range []struct {
		name string
		env  *Env
		args Args
		want error
	}{
		{"no guard", &Env{}, Args{"pid": "1234"}, ErrDisabled},
		{"no pid", &Env{Guard: g}, Args{}, ErrArgs},
		{"bad uid", &Env{Guard: g}, Args{"pid": "1234", "uid": "maybe"}, ErrArgs},
		{"bad for", &Env{Guard: g}, Args{"pid": "1234", "for": "0s"}, ErrArgs},
	} {
		if _, err := ty.New(&Call{Env: c.env, Args: c.args, Match: &MatchView{}}); !errors.Is(err, c.want) {
			t.Errorf("%s: New = %v, want %v", c.name, err, c.want)
		}
	}
	for _, pid := range []string{"1", strconv.Itoa(os.Getpid())} {
		act, err := ty.New(&Call{Env: &Env{Guard: g}, Args: Args{"pid": pid}, Match: &MatchView{}})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := act.Validate(context.Background()); !errors.Is(err, ErrPrecondition) {
			t.Errorf("Validate(pid %s) = %v, want ErrPrecondition", pid, err)
		}
	}
	if os.Geteuid() == 0 {
		act, _ := ty.New(&Call{Env: &Env{Guard: g}, Args: Args{"pid": self, "uid": "true"}, Match: &MatchView{}})
		if _, _, err := act.Validate(context.Background()); !errors.Is(err, ErrPrecondition) {
			t.Errorf("Validate(root process, uid: true) = %v, want ErrPrecondition", err)
		}
	}
	if len(g.keys()) != 0 {
		t.Errorf("listed: %v", g.keys())
	}
}

// TestExecutorQuarantineRollback: a match whose later action fails
// releases the process quarantine-process listed, and it is audited.
func TestExecutorQuarantineRollback(t *testing.T) {
	f := newFixture(t)
	g := newFakeGuard()
	f.env.Guard = g
	pid := sleepProc(t)
	set := mustRules(t, `
rules:
  - name: r
    when: 'true'
    actions:
      - {type: quarantine-process, for: 5m}
      - {type: exec, argv: [/bin/false]}
`)
	s1 := publish(t, f.s.m, fsEvent("fs.write", "/x", int32(pid)))
	publish(t, f.s.m, matchEvent("r", "", []uint64{s1}, 1))
	runUntil(t, f.executor(t, set), f.s)
	want := []string{"intent:quarantine-process", "done:quarantine-process", "intent:exec", "failed:exec",
		"rollback:quarantine-process", "rolledback:quarantine-process", "match:rolledback"}
	if diff := cmp.Diff(want, kinds(records(t, f.log.Dir()))); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
	if len(g.calls) != 2 || len(g.keys()) != 0 {
		t.Errorf("guard calls %v, listed %v; want a quarantine and its release", g.calls, g.keys())
	}
}
