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
// (durable = written to the OS), by 1, 4 and 64 appenders, batch=100
// writing 100 records per call. write= is how the records reach the file:
// pwrite = the flusher writes them with pwrite(2) (the segment not
// mapped); writeout = the appender writes them itself with pwrite(2)
// (WriteOut, as propagate's publishers of large batches do); mapped = the
// appender copies them into the mapped segment inside Write (the default
// with fsync=never).
func BenchmarkWriteWaitOne(b *testing.B) {
	for _, mode := range []string{"pwrite", "writeout", "mapped"} {
		for _, sh := range []struct{ appenders, batch int }{{1, 1}, {4, 1}, {64, 1}, {1, 100}, {4, 100}} {
			appenders := sh.appenders
			b.Run(fmt.Sprintf("write=%s/appenders=%d/batch=%d", mode, appenders, sh.batch), func(b *testing.B) {
				j := open(b, Options{Fsync: FsyncNever, noMap: mode != "mapped"})
				ctx := context.Background()
				b.ReportAllocs()
				ops := make(chan struct{}, appenders)
				var wg sync.WaitGroup
				for range appenders {
					wg.Go(func() {
						for range ops {
							first, err := j.Write(sh.batch, enc100)
							if err == nil {
								if mode == "writeout" {
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
// appender's record is in the segment file (written with write(2), or
// copied into the mapped segment) when WaitDurable returns, as another
// process reading the file sees it; the guarantee any change to the write
// path for unbatched publishes must keep.
func TestWaitDurableReturnsWhenWritten(t *testing.T) {
	for _, policy := range []FsyncPolicy{FsyncNever, FsyncInterval} {
		t.Run(policy.String(), func(t *testing.T) {
			dir := t.TempDir()
			j := open(t, Options{Dir: dir, Fsync: policy})
			ctx := context.Background()
			f, err := os.Open(joinPath(dir, 1))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for i := range 300 {
				first, err := j.Write(1, enc100)
				if err == nil {
					err = j.WaitDurable(ctx, first)
				}
				if err != nil {
					t.Fatal(err)
				}
				// Through another descriptor, as another process reads it.
				rec := make([]byte, headerSize+100)
				if _, err := f.ReadAt(rec, int64(i)*int64(len(rec))); err != nil {
					t.Fatalf("after WaitDurable(%d): %v", first, err)
				}
				if length, crc, seq := parseHeader(rec); length != 100 || seq != first || crc != recordCRC(rec) {
					t.Fatalf("after WaitDurable(%d) the file holds length %d seq %d crc ok %v there", first, length, seq, crc == recordCRC(rec))
				}
			}
		})
	}
}
