package journal

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
)

// BenchmarkWriteWaitOne is what an unbatched publish costs the journal:
// Write of one 100-byte record then WaitDurable of it, fsync=never
// (durable = written to the OS), by 1, 4 and 64 appenders, leaving the
// write to the flusher or writing out from the appender (WriteOut, as
// propagate's publishers of large batches do); batch=100 writes 100
// records per call.
func BenchmarkWriteWaitOne(b *testing.B) {
	for _, own := range []bool{false, true} {
		for _, sh := range []struct{ appenders, batch int }{{1, 1}, {4, 1}, {64, 1}, {1, 100}, {4, 100}} {
			appenders := sh.appenders
			b.Run(fmt.Sprintf("writeout=%v/appenders=%d/batch=%d", own, appenders, sh.batch), func(b *testing.B) {
				j := open(b, Options{Fsync: FsyncNever})
				ctx := context.Background()
				b.ReportAllocs()
				ops := make(chan struct{}, appenders)
				var wg sync.WaitGroup
				for range appenders {
					wg.Go(func() {
						for range ops {
							first, err := j.Write(sh.batch, enc100)
							if err == nil {
								if own {
									j.WriteOut()
								}
								err = j.WaitDurable(ctx, first+uint64(sh.batch)-1)
							}
							if err != nil {
								b.Error(err)
							}
						}
					})
				}
				for b.Loop() {
					ops <- struct{}{}
				}
				close(ops)
				wg.Wait()
				reportEvents(b, b.N*sh.batch)
				reportFlushes(b, j)
			})
		}
	}
}

// TestWaitDurableReturnsWhenWritten: with fsync interval or never, a lone
// appender's record is in the segment file (written with write(2)) when
// WaitDurable returns; the guarantee any change to the write path for
// unbatched publishes must keep.
func TestWaitDurableReturnsWhenWritten(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncNever, FsyncInterval} {
		t.Run(policy.String(), func(t *testing.T) {
			dir := t.TempDir()
			j := open(t, Options{Dir: dir, Fsync: policy})
			ctx := context.Background()
			seg := joinPath(dir, 1)
			for i := range 300 {
				first, err := j.Write(1, enc100)
				if err == nil {
					err = j.WaitDurable(ctx, first)
				}
				if err != nil {
					t.Fatal(err)
				}
				fi, err := os.Stat(seg)
				if err != nil {
					t.Fatal(err)
				}
				if want := int64(i+1) * (headerSize + 100); fi.Size() != want {
					t.Fatalf("after WaitDurable(%d) the segment has %d bytes, want %d", first, fi.Size(), want)
				}
			}
		})
	}
}
