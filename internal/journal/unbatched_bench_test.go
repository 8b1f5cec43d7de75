package journal

import (
	"context"
	"fmt"
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
		})
	}
}
