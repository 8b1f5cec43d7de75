package output

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// The abrupt-restart tests run the forwarding side in a child process (this
// test binary again, see TestMain) that the test SIGKILLs mid-stream.

const (
	childEnv     = "SEMPROP_OUTPUT_CHILD"         // the child's data directory
	childCfgEnv  = "SEMPROP_OUTPUT_CHILD_CONFIG"  // the output's Config as JSON
	childPubEnv  = "SEMPROP_OUTPUT_CHILD_PUBLISH" // events to publish into an empty journal
	childFileEnv = "SEMPROP_OUTPUT_CHILD_FILES"   // subjects they are spread over
)

// childMain publishes the events (first run only) and forwards them until
// every one is done with, then exits 0.
func childMain() int {
	fail := func(err error) int {
		fmt.Println("error", err)
		return 2
	}
	dir := os.Getenv(childEnv)
	var cfg Config
	if err := json.Unmarshal([]byte(os.Getenv(childCfgEnv)), &cfg); err != nil {
		return fail(err)
	}
	n, _ := strconv.Atoi(os.Getenv(childPubEnv))
	files, _ := strconv.Atoi(os.Getenv(childFileEnv))
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: journal.FsyncAlways, Logger: quiet})
	if err != nil {
		return fail(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Source: "semprop://child", Logger: quiet})
	if err != nil {
		return fail(err)
	}
	ctx := context.Background()
	if j.LastSeq() == 0 {
		evs := make([]*event.Event, n)
		for i := range evs {
			evs[i] = &event.Event{Type: "fs.write", Subject: fmt.Sprintf("/srv/d/f%d.md", i%files), Data: []byte(`{"n":` + strconv.Itoa(i) + `}`)}
		}
		for i := 0; i < n; i += 500 {
			if err := m.PublishBatch(ctx, evs[i:min(i+500, n)]); err != nil {
				return fail(err)
			}
		}
	}
	o, err := New(Options{Outputs: []Config{cfg}, Dir: filepath.Join(dir, "outputs"), Manager: m, CursorInterval: 50 * time.Millisecond, Logger: quiet})
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	for o.Infos()[0].Cursor < uint64(n) {
		select {
		case err := <-done:
			return fail(err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	<-done
	fmt.Println("done")
	return 0
}

// received is what a target got: seq and subject, in arrival order.
type received struct {
	Seq     uint64
	Subject string
}

// killTest runs the forwarding child over cfg (n events over files
// subjects), SIGKILLs it once the target got a third of them and again at
// two thirds, and lets a third child finish. count returns how many
// events the target holds so far. It returns the cursors found after each
// kill.
func killTest(t *testing.T, cfg Config, n, files int, count func() int) (cursors []uint64) {
	t.Helper()
	dir := t.TempDir()
	cfg.Start = "all"
	raw, _ := json.Marshal(cfg)
	run := func(killAt int) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+dir, childCfgEnv+"="+string(raw),
			childPubEnv+"="+strconv.Itoa(n), childFileEnv+"="+strconv.Itoa(files))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 16)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		if killAt > 0 {
			for count() < killAt {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("child exited before the kill at %d events", killAt)
					}
					if l != "done" {
						t.Fatalf("child: %s", l)
					}
				case <-time.After(2 * time.Millisecond):
				case <-ctx.Done():
					t.Fatalf("target got %d events, not %d, within the time", count(), killAt)
				}
			}
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
			var cf cursorFile
			b, err := os.ReadFile(filepath.Join(dir, "outputs", cfg.Name, "cursor.json"))
			if err == nil {
				_ = json.Unmarshal(b, &cf)
			}
			cursors = append(cursors, cf.Seq)
			return
		}
		for l := range lines {
			if l != "done" {
				t.Fatalf("child: %s", l)
			}
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("last child: %v", err)
		}
	}
	run(n / 3)
	run(2 * n / 3)
	run(0)
	return cursors
}

// checkDelivery checks what a target got from killTest: every event,
// per-subject order of first arrivals, and duplicates only of seqs above
// the cursor persisted before a kill (the at-least-once window); with
// exactlyOnce, none at all.
func checkDelivery(t *testing.T, recs []received, n int, cursors []uint64, exactlyOnce bool) {
	t.Helper()
	seen := map[uint64]int{}
	lastBySubject := map[string]uint64{}
	dups := 0
	for _, r := range recs {
		seen[r.Seq]++
		if seen[r.Seq] > 1 {
			dups++
			inWindow := false
			for _, c := range cursors {
				if r.Seq > c {
					inWindow = true
				}
			}
			if !inWindow {
				t.Errorf("seq %d arrived twice but was below every persisted cursor %v", r.Seq, cursors)
			}
			continue
		}
		if r.Seq < lastBySubject[r.Subject] {
			t.Errorf("subject %s: seq %d first arrived after %d", r.Subject, r.Seq, lastBySubject[r.Subject])
		}
		lastBySubject[r.Subject] = r.Seq
	}
	missing := 0
	for s := uint64(1); s <= uint64(n); s++ {
		if seen[s] == 0 {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d events never arrived", missing, n)
	}
	if exactlyOnce && dups > 0 {
		t.Errorf("%d duplicates, want none", dups)
	}
	t.Logf("%d events, %d arrivals, %d duplicates; cursors at the kills %v", n, len(recs), dups, cursors)
}
