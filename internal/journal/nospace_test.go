package journal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lossyDisk is a syncFault hook that fails chosen fsyncs with an errno and,
// like a disk whose writeback failed, drops what was written since the
// file's last successful fsync (it reads back as zeros).
type lossyDisk struct {
	mu     sync.Mutex
	synced map[string]int64 // file → size at its last successful fsync
	calls  int
	fail   func(call int) error // nil error: the fsync succeeds
}

func newLossyDisk(fail func(call int) error) *lossyDisk {
	return &lossyDisk{synced: make(map[string]int64), fail: fail}
}

func (d *lossyDisk) setFail(fail func(call int) error) {
	d.mu.Lock()
	d.fail = fail
	d.mu.Unlock()
}

func (d *lossyDisk) sync(f *os.File) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := d.fail(d.calls); err != nil {
		from := d.synced[f.Name()]
		if n := fi.Size() - from; n > 0 {
			if _, werr := f.WriteAt(make([]byte, n), from); werr != nil {
				return werr
			}
		}
		return err
	}
	d.synced[f.Name()] = fi.Size()
	return nil
}

func never(int) error { return nil }

// TestFsyncNoSpaceRewritesFromMemory: with FsyncAlways, an fsync that
// fails with ENOSPC acknowledges nothing, makes Write refuse with
// ErrNoSpace, and the journal then writes the records again from memory
// (the failed fsync may have lost them) until an fsync succeeds, on its
// own, with no seq skipped or reused. Batches spanning several segments
// fail at a roll's fsync or at the final one.
func TestFsyncNoSpaceRewritesFromMemory(t *testing.T) {
	p := bytes.Repeat([]byte("y"), 110) // 126-byte records, 3 per 400-byte segment
	tests := []struct {
		name    string
		batch   int
		failAt  int // the fsync (counted from the batch's first) that fails
		errno   syscall.Errno
		segsEnd int
	}{
		{"one segment", 2, 1, syscall.ENOSPC, 2},
		{"at a roll's fsync", 10, 2, syscall.ENOSPC, 4},
		{"at the final fsync after rolls", 10, 4, syscall.ENOSPC, 4},
		{"quota", 2, 1, syscall.EDQUOT, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			disk := newLossyDisk(never)
			dir := t.TempDir()
			j := open(t, Options{Dir: dir, SegmentSize: 400, Fsync: FsyncAlways, syncFault: disk.sync})
			enc := func(_ int, _ uint64, dst []byte) ([]byte, error) { return append(dst, p...), nil }
			first, err := j.Write(2, enc)
			if err != nil || j.WaitDurable(t.Context(), first+1) != nil {
				t.Fatalf("first Write: %v", err)
			}
			disk.mu.Lock()
			base := disk.calls
			disk.mu.Unlock()
			disk.setFail(func(call int) error {
				if call-base >= tt.failAt {
					return tt.errno
				}
				return nil
			})
			first, err = j.Write(tt.batch, enc)
			if err != nil {
				t.Fatalf("Write: %v", err)
			}
			last := first + uint64(tt.batch) - 1
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err = j.WaitDurable(ctx, last)
			if !errors.Is(err, ErrNoSpace) {
				t.Fatalf("WaitDurable with a failing fsync = %v, want ErrNoSpace", err)
			}
			if errors.Is(tt.errno, syscall.EDQUOT) != errors.Is(err, syscall.EDQUOT) {
				t.Errorf("error %v does not say which errno", err)
			}
			if strings.Contains(err.Error(), dir) {
				t.Errorf("error %q names the server path", err)
			}
			if d := j.DurableSeq(); d >= last {
				t.Errorf("DurableSeq = %d although the fsync for %d failed", d, last)
			}
			if _, err := j.Write(1, enc); !errors.Is(err, ErrNoSpace) {
				t.Errorf("Write while full = %v, want ErrNoSpace", err)
			}
			if !j.Stats().NoSpace || !errors.Is(j.Err(), ErrNoSpace) {
				t.Errorf("Stats().NoSpace = %v, Err() = %v, want true, ErrNoSpace", j.Stats().NoSpace, j.Err())
			}
			for j.Stats().NoSpaceRetries < 2 && ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond) // a few retries fail
			}
			disk.setFail(never)
			if err := j.WaitDurable(ctx, last); err != nil && !errors.Is(err, ErrNoSpace) {
				t.Fatalf("WaitDurable: %v", err)
			}
			for j.Err() != nil || j.DurableSeq() < last {
				if ctx.Err() != nil {
					t.Fatalf("not recovered: Err() = %v, DurableSeq %d, want %d", j.Err(), j.DurableSeq(), last)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if st := j.Stats(); st.NoSpaceEpisodes != 1 || st.NoSpaceRetries < 2 || st.Segments != tt.segsEnd {
				t.Errorf("Stats = %+v, want 1 episode, >= 2 retries, %d segments", st, tt.segsEnd)
			}
			next, err := j.Append(ctx, p)
			if err != nil || next != last+1 {
				t.Fatalf("Append after recovery = %d, %v, want %d", next, err, last+1)
			}
			want := make([]rec, 0, next)
			for s := uint64(1); s <= next; s++ {
				want = append(want, rec{s, p})
			}
			if diff := diffRecs(want, readAll(t, j, 1)); diff != "" {
				t.Errorf("read back (-want +got):\n%s", diff)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			j2 := open(t, Options{Dir: dir, SegmentSize: 400})
			if diff := diffRecs(want, readAll(t, j2, 1)); diff != "" {
				t.Errorf("after reopen (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFsyncIOErrorIsSticky: an fsync failing with EIO (or ENOSPC when the
// policy is not always, so the data is no longer in memory) stops the
// journal until reopened, with ErrIO and no file name.
func TestFsyncIOErrorIsSticky(t *testing.T) {
	tests := []struct {
		name   string
		policy FsyncPolicy
		errno  syscall.Errno
	}{
		{"EIO always", FsyncAlways, syscall.EIO},
		{"ENOSPC interval", FsyncInterval, syscall.ENOSPC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			disk := newLossyDisk(func(int) error { return tt.errno })
			dir := t.TempDir()
			j := open(t, Options{Dir: dir, Fsync: tt.policy, FsyncInterval: time.Millisecond, syncFault: disk.sync})
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			j.Append(ctx, []byte("a"))
			for j.Err() == nil {
				if ctx.Err() != nil {
					t.Fatal("the fsync failure never showed")
				}
				time.Sleep(time.Millisecond)
			}
			disk.setFail(never)
			time.Sleep(50 * time.Millisecond)
			err := j.Err()
			if !errors.Is(err, ErrIO) || errors.Is(err, ErrNoSpace) || !errors.Is(err, tt.errno) {
				t.Errorf("Err() = %v, want sticky ErrIO wrapping %v", err, tt.errno)
			}
			if strings.Contains(err.Error(), dir) {
				t.Errorf("error %q names the server path", err)
			}
			if _, err := j.Append(ctx, []byte("b")); !errors.Is(err, ErrIO) {
				t.Errorf("Append after the failure = %v, want ErrIO", err)
			}
		})
	}
}
