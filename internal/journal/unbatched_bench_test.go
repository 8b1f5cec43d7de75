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
// (durable = written to the OS), by 1 and by 4 appenders.
func BenchmarkWriteWaitOne(b *testing.B) {
	for _, appenders := range []int{1, 4} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			j := open(b, Options{Fsync: FsyncNever})
			ctx := context.Background()
			b.ReportAllocs()
			ops := make(chan struct{}, appenders)
			var wg sync.WaitGroup
			for range appenders {
				wg.Go(func() {
					for range ops {
						first, err := j.Write(1, enc100)
						if err == nil {
							err = j.WaitDurable(ctx, first)
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
			reportEvents(b, b.N)
			reportFlushes(b, j)
			st := j.Stats()
			b.ReportMetric(float64(st.InlineFlushes)/float64(st.Flushes), "inline/flush")
		})
	}
}

// TestLoneAppenderWritesInline: a lone appender's record (fsync interval or
// never) is written by its own WaitDurable, without a hand-off to the
// flusher goroutine and back, and is in the segment file (written with
// write(2)) when WaitDurable returns. With fsync=always, and with many
// appenders, the flusher writes (it batches).
func TestLoneAppenderWritesInline(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncNever, FsyncInterval, FsyncAlways} {
		t.Run(policy.String(), func(t *testing.T) {
			j := open(t, Options{Fsync: policy})
			ctx := context.Background()
			n := 500
			if policy == FsyncAlways {
				n = 20
			}
			for i := range n {
				first, err := j.Write(1, enc100)
				if err == nil {
					err = j.WaitDurable(ctx, first)
				}
				if err != nil {
					t.Fatal(err)
				}
				fi, err := os.Stat(j.activeSeg.path)
				if err != nil {
					t.Fatal(err)
				}
				if want := int64(i+1) * (headerSize + 100); fi.Size() != want {
					t.Fatalf("after WaitDurable(%d) the segment has %d bytes, want %d", first, fi.Size(), want)
				}
			}
			st := j.Stats()
			if policy == FsyncAlways {
				if st.InlineFlushes != 0 {
					t.Errorf("fsync=always: %d flushes inline, want 0 (the flusher group-commits)", st.InlineFlushes)
				}
				return
			}
			// Nearly all: the flusher, kicked by Write, may take one now
			// and then.
			if st.InlineFlushes < uint64(n)*8/10 {
				t.Errorf("%d of %d flushes made by the lone appender, want nearly all", st.InlineFlushes, st.Flushes)
			}
		})
	}
}
