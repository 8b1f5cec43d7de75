//go:build linux

package replica

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/bridge"
	"github.com/semprop/semprop/internal/capture/fanotify"
)

// watch captures a real directory into in's journal through the kernel
// boundary (fanotify, or its inotify fallback) and the bridge, as the
// daemon does, and makes it in's tree "docs".
func (in *instance) watch(t *testing.T) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	br, err := bridge.New(bridge.Options{Publisher: in.m, Source: "semprop://" + in.name, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	w, err := fanotify.New(fanotify.Options{Root: dir, Sink: br.Kernel(), Logger: quiet})
	if err != nil {
		t.Skipf("no kernel boundary here: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := br.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("bridge: %v", err)
		}
	})
	wg.Go(func() {
		if err := w.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("watch: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		w.Close()
	})
	in.root = dir
	return dir
}

// TestRealTreesConflictAndHeal: three instances watch real directories;
// files written there reach every catalog, concurrent changes during a
// partition are a conflict after the heal, and a later write resolves it.
func TestRealTreesConflictAndHeal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fanotify needs root (the inotify fallback is used where it is refused)")
	}
	is, nw := newInstances(t, clusterOpts{n: 3, noStart: true})
	roots := make([]string, len(is))
	for i, in := range is {
		roots[i] = in.watch(t)
		root := roots[i]
		in.r.opts.Resolve = func(abs string) (string, string, bool) {
			rel, ok := strings.CutPrefix(abs, root+"/")
			return "docs", rel, ok
		}
		in.start(t)
	}
	write := func(i int, rel, content string) {
		t.Helper()
		p := filepath.Join(roots[i], rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// waitFor polls every catalog until ok holds for the versions of key.
	waitFor := func(what string, key Key, ok func([]Version) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			all := true
			for _, in := range is {
				all = all && ok(in.snapshot().Get(key))
			}
			if all {
				return
			}
			if time.Now().After(deadline) {
				for _, in := range is {
					t.Logf("%s: %+v", in.name, in.snapshot().Get(key))
				}
				t.Fatalf("%s: not everywhere after 10s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	report := Key{"docs", "reports/q4.txt"}
	write(0, report.Path, "draft")
	waitFor("the first write", report, func(vs []Version) bool { return len(vs) == 1 && vs[0].Instance == "n0" && vs[0].Size == 5 })

	nw.partition([]*instance{is[0]}, []*instance{is[1], is[2]})
	quiesce(t, is)
	write(0, report.Path, "laptop edit")
	write(1, report.Path, "server edit, longer")
	// Capture takes a moment: heal only once each side has its own edit.
	for i, size := range map[int]int64{0: 11, 1: 19} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			vs := is[i].snapshot().Get(report)
			if len(vs) == 1 && vs[0].Instance == is[i].name && vs[0].Size == size {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not capture its edit: %+v", is[i].name, vs)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	nw.heal()
	waitFor("the conflict", report, func(vs []Version) bool { return len(vs) == 2 && Conflict(vs) })

	write(2, report.Path, "merged")
	waitFor("the resolution", report, func(vs []Version) bool { return len(vs) == 1 && vs[0].Instance == "n2" && vs[0].Size == 6 })
	if err := os.Remove(filepath.Join(roots[2], report.Path)); err != nil {
		t.Fatal(err)
	}
	waitFor("the deletion", report, func(vs []Version) bool { return vs == nil || len(vs) == 1 && vs[0].Deleted })
}
