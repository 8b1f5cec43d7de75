package fanotify

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/capture"
	"github.com/semprop/semprop/internal/capture/procinfo"
)

// shortLivedEnv sets how many processes TestShortLivedContext runs
// (default 2,000; the target is measured with 10,000).
const shortLivedEnv = "SEMPROP_SHORTLIVED_PROCS"

// TestShortLivedContext runs a shell loop of touch, chmod and ln -s (each
// process lives about a millisecond) in the watched tree and requires comm
// and exe on the ops (target 99.9%; see the end for what is enforced),
// each naming the program that made it.
func TestShortLivedContext(t *testing.T) {
	// As the daemon runs when it captures: spare Ps, so that the process
	// connector's listener does not wait for one.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4 * runtime.NumCPU()))
	root := tmpfsRoot(t)
	n := 2000
	if s := os.Getenv(shortLivedEnv); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 3 {
			t.Fatalf("%s=%q: want a number of processes ≥ 3", shortLivedEnv, s)
		}
		n = v
	}
	procs, err := procinfo.Start(context.Background(), testLogger(t))
	if err != nil {
		t.Fatalf("procinfo.Start: %v", err)
	}
	t.Cleanup(func() { procs.Close() })
	w, rec := startWatcher(t, Options{Root: root, Logger: testLogger(t), Procs: procs})

	iters := n / 3
	script := `cd "$1" || exit 1; i=0; while [ $i -lt $2 ]; do touch f$i; chmod 600 f$i; ln -s f$i l$i; i=$((i+1)); done`
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script, "sh", root, strconv.Itoa(iters))
	began := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("loop: %v: %s", err, out)
	}
	loop := time.Since(began)

	last := filepath.Join(root, fmt.Sprintf("l%d", iters-1))
	waitFor(t, 60*time.Second, "the last symlink", func() bool {
		for _, op := range rec.snapshot() {
			if op.Kind == capture.KindSymlink && op.Path == last {
				return true
			}
		}
		return false
	})
	// Let the ops of the last iteration in (the symlink is its last).
	time.Sleep(100 * time.Millisecond)

	exes := map[string]string{}
	for _, p := range []string{"touch", "chmod", "ln"} {
		exe, err := filepath.EvalSymlinks("/bin/" + p)
		if err != nil {
			t.Fatal(err)
		}
		exes[p] = exe
	}
	var total, withContext, wrong int
	for _, op := range rec.snapshot() {
		var allowed []string
		switch op.Kind {
		case capture.KindCreate:
			allowed = []string{"touch"}
		case capture.KindAttrib:
			allowed = []string{"touch", "chmod"}
		case capture.KindSymlink:
			allowed = []string{"ln"}
		default:
			continue
		}
		total++
		if op.Comm == "" || op.Exe == "" {
			continue
		}
		withContext++
		ok := false
		for _, a := range allowed {
			ok = ok || op.Comm == a && op.Exe == exes[a]
		}
		if !ok {
			wrong++
			if wrong <= 5 {
				t.Errorf("%s %s attributed to %q %q, want one of %v", op.Kind, op.Path, op.Comm, op.Exe, allowed)
			}
		}
	}
	share := float64(withContext) / float64(max(total, 1))
	t.Logf("%d processes in %v; %d ops, %d (%.3f%%) with comm and exe, %d misattributed; watcher %+v; cache %+v",
		3*iters, loop.Round(time.Millisecond), total, withContext, 100*share, wrong,
		struct{ ProcHits, ProcMisses uint64 }{w.Stats().ProcHits, w.Stats().ProcMisses}, procs.Stats())
	if total < 2*iters {
		t.Errorf("%d ops, want at least %d (a create and a symlink per iteration)", total, 2*iters)
	}
	// The target is 99.9%. What the cache cannot help is a process that
	// was gone before the listener read its exec (Stats.ExecLate, counted
	// system-wide): on a machine whose CPUs are all busy the listener
	// thread may wait for one. So by default the test requires that every
	// op without context is explained by such a process (at most two ops
	// each: touch's create and attrib) and a floor of 99%; with
	// SEMPROP_SHORTLIVED_STRICT set it requires the target.
	missing := total - withContext
	if late := int(procs.Stats().ExecLate); missing > 2*late {
		t.Errorf("%d ops without comm and exe, more than the %d processes gone before their exec was read explain", missing, late)
	}
	floor := 0.99
	switch {
	case os.Getenv("SEMPROP_SHORTLIVED_STRICT") != "":
		floor = 0.999
	case raceEnabled:
		// Under -race (CI runs packages in parallel too) the listener
		// falls behind far more often; the misses must still all be
		// explained by late execs (above), and none misattributed.
		floor = 0.75
	}
	if share < floor {
		t.Errorf("comm and exe on %.3f%% of the ops, want ≥ %.1f%%", 100*share, 100*floor)
	} else if share < 0.999 {
		t.Logf("comm and exe on %.3f%% of the ops: below the 99.9%% target (the machine is busy: %d execs read late)", 100*share, procs.Stats().ExecLate)
	}
}
