package journal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestWriteDeferredFlushConcurrent mixes writers that hand their records
// to the writer goroutine (Write, WaitDurable) with writers that may write
// them themselves (WriteDeferred, Flush), under every fsync policy and
// with segments rolling: every call must return only once its records are
// durable, and the journal must hold every record once, in seq order.
func TestWriteDeferredFlushConcurrent(t *testing.T) {
	for _, p := range []FsyncPolicy{FsyncNever, FsyncInterval, FsyncAlways} {
		t.Run(p.String(), func(t *testing.T) {
			j := open(t, Options{Fsync: p, SegmentSize: 32 << 10, FsyncInterval: time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			const writers, rounds = 4, 60
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for g := range writers {
				wg.Go(func() {
					for i := range rounds {
						n := 1 + (g+i)%7
						var (
							first uint64
							err   error
						)
						if (g+i)%2 == 0 {
							first, err = j.WriteDeferred(n, encSeq)
							if err == nil {
								err = j.Flush(ctx, first+uint64(n)-1)
							}
						} else {
							first, err = j.Write(n, encSeq)
							if err == nil {
								err = j.WaitDurable(ctx, first+uint64(n)-1)
							}
						}
						if err != nil {
							errs <- fmt.Errorf("writer %d round %d: %w", g, i, err)
							return
						}
						if d := j.DurableSeq(); d < first+uint64(n)-1 {
							errs <- fmt.Errorf("writer %d: returned with DurableSeq %d < its last seq %d", g, d, first+uint64(n)-1)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			last := j.LastSeq()
			if d := j.DurableSeq(); d != last {
				t.Fatalf("DurableSeq = %d, want LastSeq %d", d, last)
			}
			if diff := cmp.Diff(wantRecs(1, last), readAll(t, j, 1)); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFlushWritesInCaller: with fsync=never and no other writer, Flush
// writes the deferred records in the calling goroutine: they are durable
// when it returns, in one write, without the writer goroutine.
func TestFlushWritesInCaller(t *testing.T) {
	j := open(t, Options{Fsync: FsyncNever})
	first, err := j.WriteDeferred(3, encSeq)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing woke the writer goroutine: the records wait for Flush.
	time.Sleep(20 * time.Millisecond)
	if d := j.DurableSeq(); d != 0 {
		t.Fatalf("DurableSeq = %d before Flush, want 0 (WriteDeferred must not wake the writer)", d)
	}
	if err := j.Flush(context.Background(), first+2); err != nil {
		t.Fatal(err)
	}
	if d := j.DurableSeq(); d != 3 {
		t.Errorf("DurableSeq = %d after Flush, want 3", d)
	}
	if st := j.Stats(); st.Flushes != 1 {
		t.Errorf("Flushes = %d, want 1", st.Flushes)
	}
	if diff := cmp.Diff(wantRecs(1, 3), readAll(t, j, 1)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

// TestWriteDeferredClose: records left by WriteDeferred without a Flush
// are written by Close; WriteDeferred after Close fails with ErrClosed and
// Flush of a record Close wrote returns nil.
func TestWriteDeferredClose(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(Options{Dir: dir, Fsync: FsyncNever, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.WriteDeferred(2, encSeq); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Flush(context.Background(), 2); err != nil {
		t.Errorf("Flush(2) after Close wrote it = %v, want nil", err)
	}
	if err := j.Flush(context.Background(), 3); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush(3) after Close = %v, want ErrClosed", err)
	}
	if _, err := j.WriteDeferred(1, encSeq); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteDeferred after Close = %v, want ErrClosed", err)
	}
	j2 := open(t, Options{Dir: dir})
	if diff := cmp.Diff(wantRecs(1, 2), readAll(t, j2, 1)); diff != "" {
		t.Errorf("records after reopen (-want +got):\n%s", diff)
	}
}

// TestFlushCloseRace closes the journal while writers write and flush
// themselves: no write after Close touches a closed file (which would make
// the journal's error sticky and Close report it), and every record a
// Flush acknowledged is there after a reopen.
func TestFlushCloseRace(t *testing.T) {
	for range 8 {
		dir := t.TempDir()
		j, err := Open(Options{Dir: dir, Fsync: FsyncNever, Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		var (
			mu    sync.Mutex
			acked []uint64
			wg    sync.WaitGroup
		)
		for range 3 {
			wg.Go(func() {
				for {
					first, err := j.WriteDeferred(2, encSeq)
					if err != nil {
						return
					}
					if err := j.Flush(context.Background(), first+1); err != nil {
						if !errors.Is(err, ErrClosed) {
							t.Errorf("Flush = %v, want nil or ErrClosed", err)
						}
						return
					}
					mu.Lock()
					acked = append(acked, first, first+1)
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Millisecond)
		if err := j.Close(); err != nil {
			t.Fatalf("Close while writers flush = %v, want nil", err)
		}
		wg.Wait()
		j2 := open(t, Options{Dir: dir})
		got := readAll(t, j2, 1)
		slices.Sort(acked)
		if n := len(acked); n > 0 && acked[n-1] > uint64(len(got)) {
			t.Fatalf("seq %d was acknowledged, the journal holds %d records", acked[n-1], len(got))
		}
		if diff := cmp.Diff(wantRecs(1, uint64(len(got))), got); diff != "" {
			t.Fatalf("records after reopen (-want +got):\n%s", diff)
		}
	}
}
