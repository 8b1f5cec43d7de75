package propagate

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/route"
)

// BenchmarkThroughputWithRoutes publishes fresh events (ID, HLC and time
// filled by the manager, 50-byte data) in batches of 100 to one live
// subscriber, with 0 or 1,000 other, non-matching wildcard subscriptions in
// the routing table (the setup of bench/ row 1). Reports events/s.
func BenchmarkThroughputWithRoutes(b *testing.B) {
	for _, extra := range []int{0, 1000} {
		b.Run(fmt.Sprint("routes=", extra), func(b *testing.B) {
			e := newEnv(b, journal.FsyncNever)
			for i := range extra {
				p := fmt.Sprintf("route%d.*", i)
				if i%2 == 1 {
					p = fmt.Sprintf("route%d.x.>", i)
				}
				e.m.Subscribe(SubscribeOptions{Selector: route.Selector{Type: p}})
			}
			sub, _ := e.m.Subscribe(SubscribeOptions{Queue: 1 << 16, Policy: PolicyBlock, BlockTimeout: time.Minute})
			const batch = 100
			evs := make([]*event.Event, batch)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var got atomic.Uint64
			done := make(chan struct{})
			go func() {
				defer close(done)
				buf := make([]*event.Event, 1024)
				for {
					n, err := sub.NextBatch(ctx, buf)
					if err != nil {
						return
					}
					got.Add(uint64(n))
				}
			}()
			b.ReportAllocs()
			var sent uint64
			t0 := time.Now()
			for b.Loop() {
				for i := range evs {
					evs[i] = &event.Event{Type: "bench.evt", Data: []byte(`{"pad":"0123456789012345678901234567890123456789012345"}`)}
				}
				e.m.PublishBatch(ctx, evs)
				sent += batch
			}
			for got.Load() < sent {
				time.Sleep(10 * time.Microsecond)
			}
			b.ReportMetric(float64(sent)/time.Since(t0).Seconds(), "events/s")
			cancel()
			<-done
		})
	}
}
