package propagate

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/route"
)

// BenchmarkLiveLatency measures one-way latency from the start of Publish to
// the moment a subscriber goroutine holds the event, one event at a time (the
// next publish starts when the previous event arrived), like NATS's
// in-process latency figures. Reports p50 and p99 in ns.
// The subscriber blocks in Next (it spins briefly, then parks). A variant
// that polled TryNext without yielding was slower on this 2-core machine:
// it starves the journal's flusher.
func BenchmarkLiveLatency(b *testing.B) {
	for _, mode := range []string{"wait"} {
		for _, fsync := range []journal.FsyncPolicy{journal.FsyncNever, journal.FsyncAlways} {
			b.Run("sub="+mode+"/fsync="+fsync.String(), func(b *testing.B) { benchLatency(b, mode, fsync) })
		}
	}
}

func benchLatency(b *testing.B, mode string, fsync journal.FsyncPolicy) {
	{
		{
			floor := handoffFloor(20000)
			e := newEnv(b, fsync)
			sub, _ := e.m.Subscribe(SubscribeOptions{Queue: 1024})
			ev := &event.Event{ID: event.NewID(), Type: "fs.write", Subject: "/data/a.md", Time: time.Now(), HLC: e.m.Clock().Now(), Source: "s"}
			// start (publisher) and got (subscriber) on lines of their own, so
			// that neither side's write is a cache miss inside the other's timing.
			sg := new(pingLines)
			start, got := &sg.start, &sg.got
			lat := make([]int64, 0, 1<<20)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					if mode == "poll" {
						if _, ok := sub.TryNext(); !ok {
							if ctx.Err() != nil {
								return
							}
							continue
						}
					} else if _, err := sub.Next(ctx); err != nil {
						return
					}
					if len(lat) < cap(lat) {
						lat = append(lat, nanotime()-start.Load())
					}
					got.Add(1)
				}
			}()
			b.ReportAllocs()
			var n uint64
			for b.Loop() {
				n++
				start.Store(nanotime())
				if _, err := e.m.Publish(ctx, ev); err != nil {
					b.Fatal(err)
				}
				for got.Load() < n {
					runtime.Gosched() // leave the core to the subscriber and the flusher
				}
			}
			b.StopTimer()
			cancel()
			<-done
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2]), "p50-ns")
				b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ns")
				b.ReportMetric(float64(floor[len(floor)/2]), "floor-p50-ns")
				// The part after the event was queued (the manager's own
				// histogram, bucket upper bounds): the rest is the
				// publisher's path (journal write, routing, push).
				b.ReportMetric(float64(e.m.Stats().Latency.Quantile(0.5)), "queued→taken-p50-ns")
			}
		}
	}
}

// BenchmarkHandoffFloor is LiveLatency's baseline: the same measurement
// (a clock read before, one after, the next round when the last one
// arrived) of the least a hand-off between two goroutines can cost — one
// value written on one cache line, read by a goroutine spinning on it.
// LiveLatency minus this is what propagate adds (the publisher's path:
// fill, order lock, routing, queueing; the subscriber's pop). On this
// virtual machine the floor moves with where the hypervisor runs the two
// vCPUs (75–90 ns, or 250–290 ns for minutes at a time), so LiveLatency
// reports the floor it measured just before (floor-p50-ns).
func BenchmarkHandoffFloor(b *testing.B) {
	b.ReportAllocs()
	lat := handoffFloor(b.N)
	b.ReportMetric(float64(lat[len(lat)/2]), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ns")
}

// handoffFloor runs n rounds of the floor measurement and returns the
// sorted latencies.
func handoffFloor(n int) []int64 {
	var line struct {
		_ [cacheLine]byte
		v atomic.Uint64
		_ [cacheLine]byte
	}
	// start (publisher) and got (subscriber) on lines of their own, so
	// that neither side's write is a cache miss inside the other's timing.
	sg := new(pingLines)
	start, got := &sg.start, &sg.got
	lat := make([]int64, 0, min(n, 1<<20))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for want := uint64(1); ; want++ {
			for line.v.Load() < want {
			}
			if line.v.Load() == ^uint64(0) {
				return
			}
			if len(lat) < cap(lat) {
				lat = append(lat, nanotime()-start.Load())
			}
			got.Add(1)
		}
	}()
	var i uint64
	for i < uint64(n) {
		i++
		start.Store(nanotime())
		line.v.Store(i)
		for got.Load() < i {
			runtime.Gosched()
		}
	}
	line.v.Store(^uint64(0))
	<-done
	slices.Sort(lat)
	if len(lat) == 0 {
		lat = append(lat, 0)
	}
	return lat
}

// pingLines holds a latency benchmark's two flags on separate cache lines.
type pingLines struct {
	_     [cacheLine]byte
	start atomic.Int64
	_     [cacheLine]byte
	got   atomic.Uint64
	_     [cacheLine]byte
}

// BenchmarkThroughput publishes pre-built events in batches of 256 to one
// live subscriber that drains in batches; reports events/s.
func BenchmarkThroughput(b *testing.B) {
	for _, fsync := range []journal.FsyncPolicy{journal.FsyncNever, journal.FsyncInterval} {
		b.Run("fsync="+fsync.String(), func(b *testing.B) {
			e := newEnv(b, fsync)
			evs := make([]*event.Event, 256)
			for i := range evs {
				evs[i] = &event.Event{ID: event.NewID(), Type: "fs.write", Subject: "/data/a.md", Time: time.Now(), HLC: e.m.Clock().Now(), Source: "s"}
			}
			benchThroughput(b, e, func() []*event.Event { return evs })
		})
	}
}

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
				if _, err := e.m.Subscribe(SubscribeOptions{Selector: route.Selector{Type: p}}); err != nil {
					b.Fatal(err)
				}
			}
			evs := make([]*event.Event, 100)
			benchThroughput(b, e, func() []*event.Event {
				for i := range evs {
					evs[i] = &event.Event{Type: "bench.evt", Data: []byte(`{"pad":"0123456789012345678901234567890123456789012345"}`)}
				}
				return evs
			})
		})
	}
}

// benchThroughput publishes next() batches to one live subscriber (block
// policy, so nothing is dropped) until the benchmark ends and every event
// arrived, and reports events/s.
func benchThroughput(b *testing.B, e *env, next func() []*event.Event) {
	sub, err := e.m.Subscribe(SubscribeOptions{Queue: 1 << 16, Policy: PolicyBlock, BlockTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
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
		evs := next()
		if err := e.m.PublishBatch(ctx, evs); err != nil {
			b.Fatal(err)
		}
		sent += uint64(len(evs))
	}
	for got.Load() < sent {
		time.Sleep(10 * time.Microsecond)
	}
	el := time.Since(t0)
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(sent)/el.Seconds(), "events/s")
}
