package fusefs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/capture"
	"github.com/semprop/semprop/internal/capture/procinfo"
)

// TestShortLivedContext runs a shell loop of touch, chmod and ln -s through
// the mount and requires comm and exe on at least 99.9% of the ops, each
// naming the program that made it (SEMPROP_SHORTLIVED_PROCS processes,
// default 2,000).
func TestShortLivedContext(t *testing.T) {
	requireFUSE(t)
	n := 2000
	if s := os.Getenv("SEMPROP_SHORTLIVED_PROCS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 3 {
			t.Fatalf("SEMPROP_SHORTLIVED_PROCS=%q: want a number of processes ≥ 3", s)
		}
		n = v
	}
	procs, err := procinfo.Start(context.Background(), testLogger(t))
	if err != nil {
		t.Fatalf("procinfo.Start: %v", err)
	}
	t.Cleanup(func() { procs.Close() })
	rec := &recorder{}
	f := mountT(t, Options{Sink: rec, Procs: procs})

	iters := n / 3
	script := `cd "$1" || exit 1; i=0; while [ $i -lt $2 ]; do touch f$i; chmod 600 f$i; ln -s f$i l$i; i=$((i+1)); done`
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	began := time.Now()
	if out, err := exec.CommandContext(ctx, "/bin/sh", "-c", script, "sh", f.mount, strconv.Itoa(iters)).CombinedOutput(); err != nil {
		t.Fatalf("loop: %v: %s", err, out)
	}
	loop := time.Since(began)
	ops := rec.waitQuiet(3*iters, 10*time.Second)

	exes := map[string]string{}
	for _, p := range []string{"touch", "chmod", "ln"} {
		exe, err := filepath.EvalSymlinks("/bin/" + p)
		if err != nil {
			t.Fatal(err)
		}
		exes[p] = exe
	}
	var total, withContext, wrong int
	for _, op := range ops {
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
	t.Logf("%d processes in %v; %d ops, %d (%.3f%%) with comm and exe, %d misattributed; unknown callers %d; cache %+v",
		3*iters, loop.Round(time.Millisecond), total, withContext, 100*share, wrong, f.Stats().UnknownCaller, procs.Stats())
	if total < 3*iters {
		t.Errorf("%d ops, want at least %d", total, 3*iters)
	}
	if share < 0.999 {
		t.Errorf("comm and exe on %.3f%% of the ops, want ≥ 99.9%%", 100*share)
	}
}

// TestExecContext: a process that works through the mount and then execs
// another program, which works through it at once, has each op attributed
// to the program that made it (the per-thread /proc cache alone gave the
// second op the first program's name for 250ms).
func TestExecContext(t *testing.T) {
	requireFUSE(t)
	procs, err := procinfo.Start(context.Background(), testLogger(t))
	if err != nil {
		t.Fatalf("procinfo.Start: %v", err)
	}
	t.Cleanup(func() { procs.Close() })
	rec := &recorder{}
	f := mountT(t, Options{Sink: rec, Procs: procs})
	want := map[string][2]string{} // base name → comm, exe
	for _, p := range []string{"sh", "touch"} {
		exe, err := filepath.EvalSymlinks("/bin/" + p)
		if err != nil {
			t.Fatal(err)
		}
		want[p] = [2]string{p, exe}
	}
	const n = 5
	for i := range n {
		a, b := "a"+strconv.Itoa(i), "b"+strconv.Itoa(i)
		// The shell creates a itself (a redirection), then becomes touch,
		// which creates b: one pid, two programs.
		cmd := exec.Command("/bin/sh", "-c", `: > "$1"; exec /bin/touch "$2"`, "sh", filepath.Join(f.mount, a), filepath.Join(f.mount, b))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sh: %v: %s", err, out)
		}
	}
	ops := rec.waitQuiet(2*n, 10*time.Second)
	seen := 0
	for _, op := range ops {
		if op.Kind != capture.KindCreate {
			continue
		}
		prog := map[byte]string{'a': "sh", 'b': "touch"}[filepath.Base(op.Path)[0]]
		if got := [2]string{op.Comm, op.Exe}; got != want[prog] {
			t.Errorf("create %s: comm, exe = %q, want %q", op.Path, got, want[prog])
		}
		seen++
	}
	if seen != 2*n {
		t.Errorf("%d creates, want %d", seen, 2*n)
	}
}
