package journal

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// writeOut is the publisher's path: Write, WriteOut, WaitDurable.
func writeOut(ctx context.Context, j *Journal, n int) (first uint64, err error) {
	first, err = j.Write(n, encSeq)
	if err != nil {
		return 0, err
	}
	j.WriteOut()
	return first, j.WaitDurable(ctx, first+uint64(n)-1)
}

// TestWriteOutWritesFromCaller: with fsync never or interval, a lone
// writer's WriteOut writes the buffer itself (the flusher would otherwise
// write every batch); with fsync always it leaves the group commit to the
// flusher. Every record is there, in order, after a reopen.
func TestWriteOutWritesFromCaller(t *testing.T) {
	for _, tc := range []struct {
		policy FsyncPolicy
		own    bool
	}{{FsyncNever, true}, {FsyncInterval, true}, {FsyncAlways, false}} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			dir := t.TempDir()
			j := open(t, Options{Dir: dir, Fsync: tc.policy, FsyncInterval: time.Hour, SegmentSize: 64 << 10, noMap: true})
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			n := 2000
			if tc.policy == FsyncAlways {
				n = 200
			}
			for range n {
				if _, err := writeOut(ctx, j, 1); err != nil {
					t.Fatal(err)
				}
			}
			st := j.Stats()
			t.Logf("%d flushes, %d by the writer", st.Flushes, st.WriterFlushes)
			if tc.own && st.WriterFlushes < uint64(n)/4 {
				t.Errorf("%d of %d batches written by the writer, want most (%d flushes in all)", st.WriterFlushes, n, st.Flushes)
			}
			if !tc.own && st.WriterFlushes != 0 {
				t.Errorf("fsync always: %d batches written by the writer, want 0", st.WriterFlushes)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			got := readAll(t, open(t, Options{Dir: dir}), 1)
			if !slices.EqualFunc(got, wantRecs(1, uint64(n)), recEqual) {
				t.Fatalf("after reopen: %d records, want 1..%d with their payloads", len(got), n)
			}
		})
	}
}

func recEqual(a, b rec) bool { return a.Seq == b.Seq && string(a.Payload) == string(b.Payload) }

// TestWriteOutConcurrent: writers writing out their own batches, the
// flusher, fsync ticks, Sync calls and segment rolls all touch the active
// segment; every acknowledged record must be there once, in seq order,
// after a reopen (run with -race).
func TestWriteOutConcurrent(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncNever, FsyncInterval} {
		t.Run(policy.String(), func(t *testing.T) {
			dir := t.TempDir()
			j := open(t, Options{Dir: dir, Fsync: policy, FsyncInterval: time.Millisecond, SegmentSize: 16 << 10})
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			var (
				wg      sync.WaitGroup
				syncer  sync.WaitGroup
				mu      sync.Mutex
				acked   uint64
				stopped = make(chan struct{})
			)
			syncer.Go(func() {
				for {
					select {
					case <-stopped:
						return
					case <-time.After(time.Millisecond):
						if err := j.Sync(ctx); err != nil {
							t.Errorf("Sync: %v", err)
							return
						}
					}
				}
			})
			for g := range 8 {
				wg.Go(func() {
					for i := range 500 {
						n := 1 + (g+i)%7
						first, err := writeOut(ctx, j, n)
						if err != nil {
							t.Errorf("writer %d: %v", g, err)
							return
						}
						mu.Lock()
						acked = max(acked, first+uint64(n)-1)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			close(stopped)
			syncer.Wait()
			st := j.Stats()
			if st.WriterFlushes == 0 {
				t.Errorf("no batch written by a writer (%d flushes)", st.Flushes)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			got := readAll(t, open(t, Options{Dir: dir}), 1)
			if !slices.EqualFunc(got, wantRecs(1, acked), recEqual) {
				t.Fatalf("after reopen: %d records, want 1..%d with their payloads", len(got), acked)
			}
			t.Logf("%d flushes, %d by writers, %d segments", st.Flushes, st.WriterFlushes, st.Segments)
		})
	}
}

// TestWriteOutRacesClose: writers keep writing out while the journal
// closes. Each call either is acknowledged (and the record is there after
// a reopen) or fails with ErrClosed; none hangs, and nothing is written
// after Close returned.
func TestWriteOutRacesClose(t *testing.T) {
	for round := range 20 {
		dir := t.TempDir()
		j, err := Open(Options{Dir: dir, Fsync: FsyncNever, SegmentSize: 16 << 10, Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			acked uint64
		)
		for g := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					n := 1 + (g+i)%5
					first, err := writeOut(ctx, j, n)
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						t.Errorf("round %d writer %d: %v", round, g, err)
						return
					}
					mu.Lock()
					acked = max(acked, first+uint64(n)-1)
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Duration(1+round%5) * time.Millisecond)
		if err := j.Close(); err != nil {
			t.Fatalf("round %d: Close: %v", round, err)
		}
		wg.Wait()
		cancel()
		j2 := open(t, Options{Dir: dir})
		got := readAll(t, j2, 1)
		if uint64(len(got)) < acked || !slices.EqualFunc(got, wantRecs(1, uint64(len(got))), recEqual) {
			t.Fatalf("round %d: after reopen %d records, want at least the %d acknowledged, 1..n in order", round, len(got), acked)
		}
		j2.Close()
	}
}
