package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mountTmpfs mounts a tmpfs of size bytes on a fresh temp dir and unmounts
// it at cleanup; it skips the test when that is not possible (not root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillFile writes zeros to path until the file system is full and returns
// the bytes written.
func fillFile(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	var n int64
	for {
		m, err := f.Write(buf)
		n += int64(m)
		if errors.Is(err, syscall.ENOSPC) {
			return n
		}
		if err != nil {
			t.Fatalf("fill %s: %v", path, err)
		}
	}
}

// TestDiskFullRecoversWithoutReopen fills a real (tmpfs) file system under
// a running journal: Append must fail with ErrNoSpace and acknowledge
// nothing it did not write, the error must not carry server paths, and
// once space is freed the journal must take writes again on its own,
// without a reopen, with seqs contiguous and every acknowledged record
// readable after a reopen.
func TestDiskFullRecoversWithoutReopen(t *testing.T) {
	t.Run("append", func(t *testing.T) {
		diskFullTest(t, FsyncAlways, 4, func(ctx context.Context, j *Journal, p []byte) (uint64, error) {
			return j.Append(ctx, p)
		})
	})
	// A lone writer writing its records out itself (WriteOut) meets the
	// full disk instead of the flusher.
	t.Run("write out", func(t *testing.T) {
		diskFullTest(t, FsyncNever, 1, func(ctx context.Context, j *Journal, p []byte) (uint64, error) {
			seq, err := j.Write(1, func(_ int, _ uint64, dst []byte) ([]byte, error) { return append(dst, p...), nil })
			if err != nil {
				return 0, err
			}
			j.WriteOut()
			return seq, j.WaitDurable(ctx, seq)
		})
	})
}

func diskFullTest(t *testing.T, policy FsyncPolicy, writers int, appendOne func(context.Context, *Journal, []byte) (uint64, error)) {
	mnt := mountTmpfs(t, "1m")
	dir := filepath.Join(mnt, "journal")
	log, logs := bufLogger()
	opts := Options{Dir: dir, SegmentSize: 64 << 10, Fsync: policy, Logger: log}
	j, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ballast := filepath.Join(mnt, "ballast")
	fillFile(t, ballast)
	// Free a little so that a few records fit before the disk is full.
	if err := os.Truncate(ballast, mustSize(t, ballast)-16<<10); err != nil {
		t.Fatal(err)
	}

	// Concurrent appenders until the disk is full; each remembers what
	// was acknowledged to it.
	var (
		mu      sync.Mutex
		acked   = map[uint64][]byte{}
		failErr error
		wg      sync.WaitGroup
	)
	for g := range writers {
		wg.Go(func() {
			for i := 0; i < 5000; i++ {
				p := fmt.Appendf(nil, "g%d-%d-%s", g, i, bytes.Repeat([]byte{'x'}, 500+g*100))
				seq, err := appendOne(ctx, j, p)
				mu.Lock()
				if err != nil {
					if failErr == nil || !errors.Is(failErr, ErrNoSpace) {
						failErr = err
					}
					mu.Unlock()
					return
				}
				acked[seq] = p
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failErr == nil {
		t.Fatal("Append never failed on a full file system")
	}
	if len(acked) == 0 {
		t.Fatal("no Append succeeded before the disk was full")
	}
	if !errors.Is(failErr, ErrNoSpace) {
		t.Fatalf("Append on a full disk = %v, want ErrNoSpace", failErr)
	}
	if strings.Contains(failErr.Error(), mnt) {
		t.Errorf("error %q reveals the server path %s", failErr, mnt)
	}
	if err := j.Err(); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Err() on a full disk = %v, want ErrNoSpace", err)
	}
	if st := j.Stats(); policy != FsyncAlways && writers == 1 && st.WriterFlushes == 0 {
		t.Errorf("no batch written by the writer itself (%d flushes)", st.Flushes)
	}
	assigned := j.LastSeq()
	if d := j.DurableSeq(); acked[d+1] != nil || d < uint64(len(acked)) {
		t.Errorf("DurableSeq = %d with %d acknowledged", d, len(acked))
	}
	// While full, writes are refused at once.
	if _, err := appendOne(ctx, j, []byte("refused")); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Append while full = %v, want ErrNoSpace", err)
	}
	if got := j.LastSeq(); got != assigned {
		t.Errorf("a refused Append moved LastSeq from %d to %d", assigned, got)
	}

	// Let a few retries fail (20, 40, 80 ms apart, later on a loaded
	// machine), then free the space: the journal must notice on its own.
	for wait := time.Now().Add(10 * time.Second); j.Stats().NoSpaceRetries < 3 && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond)
	}
	if st := j.Stats(); !st.NoSpace || st.NoSpaceRetries < 3 {
		t.Errorf("Stats = %+v, want NoSpace and several retries", st)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for j.Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("journal still failing 10s after space was freed: %v", j.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}
	seq, err := appendOne(ctx, j, []byte("after"))
	if err != nil {
		t.Fatalf("Append after space was freed = %v, want nil (no reopen)", err)
	}
	if seq != assigned+1 {
		t.Errorf("Append after recovery got seq %d, want %d (contiguous, none reused)", seq, assigned+1)
	}
	acked[seq] = []byte("after")
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	j2 := open(t, Options{Dir: dir, SegmentSize: 64 << 10})
	got := readAll(t, j2, 1)
	if uint64(len(got)) != seq {
		t.Fatalf("after reopen %d records, want %d", len(got), seq)
	}
	for i, r := range got {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i, r.Seq)
		}
	}
	for s, p := range acked {
		if s > uint64(len(got)) || !bytes.Equal(got[s-1].Payload, p) {
			t.Errorf("acknowledged seq %d missing or different after reopen", s)
		}
	}
	var lines int
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "no space") {
			lines++
		}
	}
	if lines == 0 || lines > 3 {
		t.Errorf("%d log lines about the full disk over %d retries, want 1 to 3:\n%s", lines, j.Stats().NoSpaceRetries, logs)
	}
	t.Logf("log:\n%s", logs)
}

func mustSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestCloseWhileDiskFull: Close gives up on what it cannot write, says so
// with ErrNoSpace, and leaves no clean-shutdown marker; the next Open keeps
// every acknowledged record and takes new ones.
func TestCloseWhileDiskFull(t *testing.T) {
	mnt := mountTmpfs(t, "256k")
	dir := filepath.Join(mnt, "journal")
	j, err := Open(Options{Dir: dir, SegmentSize: 32 << 10, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ballast := filepath.Join(mnt, "ballast")
	fillFile(t, ballast)
	if err := os.Truncate(ballast, mustSize(t, ballast)-8<<10); err != nil {
		t.Fatal(err)
	}
	var acked uint64
	for {
		seq, err := j.Append(t.Context(), bytes.Repeat([]byte("z"), 700))
		if err != nil {
			if !errors.Is(err, ErrNoSpace) {
				t.Fatalf("Append = %v, want ErrNoSpace", err)
			}
			break
		}
		acked = seq
	}
	if err := j.Close(); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Close while full = %v, want ErrNoSpace", err)
	}
	if _, err := os.Stat(filepath.Join(dir, cleanName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("clean-shutdown marker after a Close that lost records: %v", err)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	j2 := open(t, Options{Dir: dir, SegmentSize: 32 << 10})
	if got := j2.LastSeq(); got < acked {
		t.Fatalf("LastSeq after reopen = %d, acknowledged up to %d", got, acked)
	}
	if got := readAll(t, j2, 1); uint64(len(got)) != j2.LastSeq() {
		t.Errorf("read %d records, LastSeq %d", len(got), j2.LastSeq())
	}
	if seq, err := j2.Append(t.Context(), []byte("again")); err != nil || seq != j2.LastSeq() {
		t.Errorf("Append after reopen = %d, %v", seq, err)
	}
}

// TestNoInodeForNewSegment: when a new segment cannot be created (the file
// system is out of inodes), the batch waits in memory like any other on a
// full disk and is written to the new segment once an inode is free.
func TestNoInodeForNewSegment(t *testing.T) {
	mnt := mountTmpfs(t, "4m,nr_inodes=16")
	dir := filepath.Join(mnt, "journal")
	j, err := Open(Options{Dir: dir, SegmentSize: 4 << 10, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	// Use up every inode left.
	var ballast []string
	for i := 0; ; i++ {
		p := filepath.Join(mnt, fmt.Sprintf("b%d", i))
		f, err := os.Create(p)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		ballast = append(ballast, p)
	}
	if len(ballast) == 0 {
		t.Fatal("no inode was free to begin with")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := bytes.Repeat([]byte("i"), 1000)
	var acked uint64
	for {
		seq, err := j.Append(ctx, p)
		if err != nil {
			if !errors.Is(err, ErrNoSpace) {
				t.Fatalf("Append = %v, want ErrNoSpace", err)
			}
			break
		}
		acked = seq
	}
	if st := j.Stats(); st.Segments != 1 || acked == 0 {
		t.Fatalf("failed with %d segments after %d records, want the first roll to fail", st.Segments, acked)
	}
	if err := os.Remove(ballast[0]); err != nil {
		t.Fatal(err)
	}
	for j.Err() != nil {
		if ctx.Err() != nil {
			t.Fatalf("not recovered after an inode was freed: %v", j.Err())
		}
		time.Sleep(5 * time.Millisecond)
	}
	seq, err := j.Append(ctx, p)
	if err != nil || seq != acked+2 {
		t.Fatalf("Append after recovery = %d, %v, want %d (the refused record was written first)", seq, err, acked+2)
	}
	if st := j.Stats(); st.Segments != 2 {
		t.Errorf("Segments = %d, want 2", st.Segments)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2 := open(t, Options{Dir: dir, SegmentSize: 4 << 10})
	got := readAll(t, j2, 1)
	if uint64(len(got)) != seq {
		t.Fatalf("%d records after reopen, want %d", len(got), seq)
	}
	for i, r := range got {
		if r.Seq != uint64(i+1) || !bytes.Equal(r.Payload, p) {
			t.Fatalf("record %d = seq %d, want %d with the payload", i, r.Seq, i+1)
		}
	}
}
