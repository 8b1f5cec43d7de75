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
			w, rec := startWatcher(t, Options{Root: root, ForceInotify: mode.inotify, RescanBackoff: backoff})
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
