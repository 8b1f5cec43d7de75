package journal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// crashEnv selects child mode for TestCrashChild: it holds the directory
// the child appends to; crashFsyncEnv the fsync policy it appends with.
const (
	crashEnv      = "SEMPROP_JOURNAL_CRASH_CHILD_DIR"
	crashFsyncEnv = "SEMPROP_JOURNAL_CRASH_CHILD_FSYNC"
)

// TestCrashChild is the process TestCrash kills. It appends from several
// goroutines and records each acknowledged seq in the side file "acked"
// (one O_APPEND write per seq, after the ack). Flushes are split into two
// write(2) calls (two copies into a mapped segment) with a sleep between
// so that kills land mid-record and leave torn tails.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("helper process for TestCrash")
	}
	policy, err := ParseFsyncPolicy(os.Getenv(crashFsyncEnv))
	if err != nil {
		t.Fatal(err)
	}
	j, err := Open(Options{
		Dir:         filepath.Join(dir, "journal"),
		SegmentSize: 16 << 10, // rolls happen too
		Fsync:       policy,
		Logger:      discardLogger(),
		splitWrite:  500 * time.Microsecond,
	})
	if err != nil {
		t.Fatalf("child Open: %v", err)
	}
	side, err := os.OpenFile(filepath.Join(dir, "acked"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Bounded: the parent kills us long before this.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			var line []byte
			for i := 0; ctx.Err() == nil; i++ {
				n := 1 + (g+i)%4
				first, err := j.Write(n, encSeq)
				if err != nil {
					t.Error(err)
					return
				}
				last := first + uint64(n) - 1
				if err := j.WaitDurable(ctx, last); err != nil {
					return
				}
				for s := first; s <= last; s++ {
					line = strconv.AppendUint(line[:0], s, 10)
					line = append(line, '\n')
					if _, err := side.Write(line); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	t.Fatal("child was not killed within 20s")
}

// TestCrash SIGKILLs an appending child at random moments and checks after
// each kill that recovery keeps every acknowledged record, contiguous and
// intact, and that torn tails were actually produced and cut: with
// fsync=always (records written with pwrite(2) and fsynced before the
// ack) and with fsync=never (records copied into a memory-mapped,
// preallocated segment, acknowledged once copied).
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	for _, policy := range []FsyncPolicy{FsyncAlways, FsyncNever} {
		t.Run(policy.String(), func(t *testing.T) { testCrash(t, policy) })
	}
}

func testCrash(t *testing.T, policy FsyncPolicy) {
	dir := t.TempDir()
	jdir := filepath.Join(dir, "journal")
	start := time.Now()
	const minRounds, maxRounds = 20, 30
	var rounds, tornRounds, partialRounds, ackedTotal int
	for rounds < maxRounds && (rounds < minRounds || time.Since(start) < 25*time.Second) {
		if time.Since(start) > 50*time.Second {
			t.Fatalf("only %d rounds in 50s", rounds)
		}
		rounds++
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, crashFsyncEnv+"="+policy.String())
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		ready := filepath.Join(dir, "ready")
		os.Remove(ready)
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		// Wait until the child has recovered the journal and is appending,
		// then kill it at a random moment.
		for wait := time.Now(); ; time.Sleep(time.Millisecond) {
			if _, err := os.Stat(ready); err == nil {
				break
			}
			if time.Since(wait) > 15*time.Second {
				cmd.Process.Kill()
				cmd.Wait()
				cancel()
				t.Fatalf("round %d: child not ready after 15s:\n%s", rounds, out.String())
			}
		}
		time.Sleep(time.Duration(10+rand.IntN(141)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child was not killed by SIGKILL (err %v):\n%s", rounds, err, out.String())
		}

		acked := readAcked(t, filepath.Join(dir, "acked"))
		ackedTotal = len(acked)
		log, logs := bufLogger()
		j, err := Open(Options{Dir: jdir, Logger: log})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", rounds, err)
		}
		st := j.Stats()
		if st.Truncated > 0 {
			tornRounds++
			if !strings.Contains(logs.String(), "torn tail") {
				t.Errorf("round %d: %d bytes truncated but not logged:\n%s", rounds, st.Truncated, logs)
			}
			// A record written in part, not only whole records missing
			// (which a mapped segment's preallocated zeros look like).
			if strings.Contains(logs.String(), "cut short") || strings.Contains(logs.String(), "zeroed sectors") ||
				strings.Contains(logs.String(), "runs past end") || strings.Contains(logs.String(), "short header") {
				partialRounds++
			}
		}
		// Every record present is contiguous from FirstSeq, in order, once,
		// with a valid CRC and the payload its seq was written with.
		r, err := j.Reader(0)
		if err != nil {
			t.Fatal(err)
		}
		want := st.FirstSeq
		for {
			seq, p, ok, err := r.TryNext()
			if err != nil {
				t.Fatalf("round %d: read after recovery at seq %d: %v", rounds, want, err)
			}
			if !ok {
				break
			}
			if seq != want || !bytes.Equal(p, payloadFor(seq)) {
				t.Fatalf("round %d: record seq %d (payload ok %v), want seq %d", rounds, seq, bytes.Equal(p, payloadFor(seq)), want)
			}
			want++
		}
		r.Close()
		if want-1 != st.LastSeq || st.DurableSeq != st.LastSeq {
			t.Fatalf("round %d: read up to %d, LastSeq %d, DurableSeq %d", rounds, want-1, st.LastSeq, st.DurableSeq)
		}
		// Every acknowledged seq survived.
		for s := range acked {
			if s < st.FirstSeq || s > st.LastSeq {
				t.Fatalf("round %d: acknowledged seq %d lost (journal holds %d..%d)", rounds, s, st.FirstSeq, st.LastSeq)
			}
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d rounds in %v, %d with a torn tail truncated (%d in a record), %d acknowledged seqs",
		rounds, time.Since(start).Round(time.Millisecond), tornRounds, partialRounds, ackedTotal)
	if ackedTotal == 0 {
		t.Fatalf("children acknowledged nothing: the test tested nothing")
	}
	if partialRounds == 0 {
		t.Fatalf("no round left a record written in part: recovery of torn tails was not exercised")
	}
}

// readAcked parses the side file; a seq acknowledged twice is an error.
func readAcked(t *testing.T, path string) map[uint64]bool {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	acked := make(map[uint64]bool)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		s, err := strconv.ParseUint(sc.Text(), 10, 64)
		if err != nil {
			t.Fatalf("side file line %q: %v", sc.Text(), err)
		}
		if acked[s] {
			t.Fatalf("seq %d acknowledged twice (duplicate seq)", s)
		}
		acked[s] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return acked
}
