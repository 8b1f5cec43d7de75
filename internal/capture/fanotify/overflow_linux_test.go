package fanotify

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/capture"
)

// makeFiles creates n empty files named prefix0..prefixN-1 in dir.
func makeFiles(t *testing.T, dir, prefix string, n int) map[string]bool {
	t.Helper()
	names := make(map[string]bool, n)
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("%s%d", prefix, i))
		if err := writeFile(p, os.O_CREATE|os.O_WRONLY, ""); err != nil {
			t.Fatal(err)
		}
		names[p] = true
	}
	return names
}

// overflowRound pauses the reader, creates n files, resumes, and checks
// that an overflow was reported and that the creates seen directly plus
// those found by the rescan are exactly the files made, each once. It
// returns the overflow and rescan-summary ops of this round.
func overflowRound(t *testing.T, w *Watcher, rec *recorder, dir, prefix string, n int) (ovf, sum *capture.Op) {
	t.Helper()
	start := rec.len()
	w.Pause()
	files := makeFiles(t, dir, prefix, n)
	w.Resume()
	waitFor(t, 30*time.Second, "rescan summary", func() bool {
		for _, op := range rec.snapshot()[start:] {
			if op.Kind == capture.KindRescan {
				return true
			}
		}
		return false
	})
	time.Sleep(100 * time.Millisecond)
	seen := make(map[string]int)
	var direct, rescanned int64
	for _, op := range rec.snapshot()[start:] {
		switch op.Kind {
		case capture.KindOverflow:
			if ovf == nil {
				ovf = op
			}
		case capture.KindRescan:
			sum = op
		case capture.KindCreate:
			seen[op.Path]++
			if op.Rescan {
				rescanned++
				if ovf == nil {
					t.Errorf("rescan op %s before the overflow op", op.Path)
				}
			} else {
				direct++
			}
		default:
			t.Errorf("unexpected op %v %s (rescan %v)", op.Kind, op.Path, op.Rescan)
		}
	}
	if ovf == nil {
		t.Fatalf("no overflow op after %d files with the reader paused", n)
	}
	for p := range files {
		if seen[p] != 1 {
			t.Errorf("file %s reported %d times, want 1", filepath.Base(p), seen[p])
		}
	}
	if len(seen) != len(files) {
		t.Errorf("%d paths reported, want %d", len(seen), len(files))
	}
	if sum.Count != rescanned {
		t.Errorf("rescan summary Count = %d, want %d (rescan ops)", sum.Count, rescanned)
	}
	if rescanned == 0 {
		t.Errorf("the rescan found nothing; want the files lost in the overflow")
	}
	t.Logf("%d files: %d seen directly, %d found by the rescan", n, direct, rescanned)
	return ovf, sum
}

func TestOverflowRescan(t *testing.T) {
	for _, mode := range []struct {
		name    string
		inotify bool
	}{{"fanotify", false}, {"inotify", true}} {
		t.Run(mode.name, func(t *testing.T) {
			root := tmpfsRoot(t)
			backoff := 1500 * time.Millisecond
			w, rec := startWatcher(t, Options{Root: root, ForceInotify: mode.inotify, RescanBackoff: backoff, Logger: testLogger(t)})
			_, sum1 := overflowRound(t, w, rec, root, "a", 17000)
			// A second overflow right away: its rescan waits for the backoff.
			ovf2, sum2 := overflowRound(t, w, rec, root, "b", 17000)
			if gap := sum2.Time.Sub(sum1.Time); gap < backoff {
				t.Errorf("second rescan %v after the first, want >= %v (backoff)", gap, backoff)
			}
			if ovf2.Time.Sub(sum1.Time) >= backoff {
				t.Logf("note: second overflow came %v after the first rescan: backoff not exercised", ovf2.Time.Sub(sum1.Time))
			} else if wait := sum2.Time.Sub(ovf2.Time); wait < 100*time.Millisecond {
				t.Errorf("second rescan ran %v after its overflow, want it delayed by the backoff", wait)
			}
			s := w.Stats()
			if s.Overflows < 2 || s.Rescans != 2 {
				t.Errorf("Stats: overflows %d, rescans %d; want >= 2 and 2", s.Overflows, s.Rescans)
			}
		})
	}
}

// TestOverflowWhileBusy resumes a stalled reader while files keep being
// created: records queued after the overflow describe files the rescan also
// finds, and each file must still be reported exactly once.
func TestOverflowWhileBusy(t *testing.T) {
	root := tmpfsRoot(t)
	w, rec := startWatcher(t, Options{Root: root, RescanBackoff: 200 * time.Millisecond, Logger: testLogger(t)})
	w.Pause()
	files := makeFiles(t, root, "a", 17000)
	done := make(chan map[string]bool)
	go func() {
		m := make(map[string]bool)
		for i := range 20000 {
			p := filepath.Join(root, fmt.Sprintf("b%d", i))
			if writeFile(p, os.O_CREATE|os.O_WRONLY, "x") == nil {
				m[p] = true
			}
		}
		done <- m
	}()
	w.Resume()
	for p := range <-done {
		files[p] = true
	}
	count := func() map[string]int {
		seen := make(map[string]int)
		for _, op := range rec.snapshot() {
			if op.Kind == capture.KindCreate {
				seen[op.Path]++
			}
		}
		return seen
	}
	waitFor(t, 30*time.Second, "every file reported", func() bool { return len(count()) >= len(files) })
	time.Sleep(300 * time.Millisecond) // a pending rescan, if any
	seen := count()
	bad := 0
	for p := range files {
		if seen[p] != 1 && bad < 10 {
			bad++
			t.Errorf("file %s reported %d times, want 1", filepath.Base(p), seen[p])
		}
	}
	if len(seen) != len(files) {
		t.Errorf("%d paths created, want %d", len(seen), len(files))
	}
	s := w.Stats()
	if s.Overflows == 0 {
		t.Errorf("no overflow")
	}
	// A file's write op is allowed once at most too.
	writes := make(map[string]int)
	for _, op := range rec.snapshot() {
		if op.Kind == capture.KindWrite {
			writes[op.Path]++
			if writes[op.Path] == 2 {
				t.Errorf("file %s: two writes", filepath.Base(op.Path))
			}
		}
	}
	t.Logf("stats: overflows %d rescans %d found %d suppressed %d drained %d", s.Overflows, s.Rescans, s.RescanFound, s.Suppressed, s.Drained)
}
