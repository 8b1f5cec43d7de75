package propagate

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/cputime"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/route"
)

// The benchmarks in this file reproduce the shapes of bench/ row 1 inside
// the package, so that a change can be profiled and compared with
// benchstat without the peers: a journal with fsync=never, 1,000
// non-matching wildcard subscriptions (queue 16), and subscribers with
// PolicyBlock, a 65,536-event queue, draining with NextBatch(1024).

// row1Env is a manager set up like bench/ row 1, with subs subscribers
// counting what they receive.
type row1Env struct {
	e    *env
	got  atomic.Int64
	want atomic.Int64 // 0: nobody waits
	done chan struct{}
	// start is the publish's start while latencies are measured; each
	// subscriber appends the delay to its own slice.
	start   atomic.Int64
	measure atomic.Bool
	lat     [][]int64
	wg      sync.WaitGroup
}

func newRow1Env(b *testing.B, subs int) *row1Env {
	b.Helper()
	r := &row1Env{e: newEnv(b, journal.FsyncNever), done: make(chan struct{}, 1), lat: make([][]int64, subs)}
	for i := range 1000 {
		p := fmt.Sprintf("route%d.*", i)
		if i%2 == 1 {
			p = fmt.Sprintf("route%d.x.>", i)
		}
		if _, err := r.e.m.Subscribe(SubscribeOptions{Selector: route.Selector{Type: p}, Queue: 16}); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	for i := range subs {
		s, err := r.e.m.Subscribe(SubscribeOptions{Selector: route.Selector{Type: "bench.>"}, Queue: 1 << 16, Policy: PolicyBlock, BlockTimeout: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		r.wg.Go(func() {
			buf := make([]*event.Event, 1024)
			for {
				k, err := s.NextBatch(ctx, buf)
				if err != nil {
					return
				}
				if r.measure.Load() {
					r.lat[i] = append(r.lat[i], nanotime()-r.start.Load())
				}
				got := r.got.Add(int64(k))
				if w := r.want.Load(); w > 0 && got >= w && r.want.CompareAndSwap(w, 0) {
					select {
					case r.done <- struct{}{}:
					default: // a signal is pending already; wait checks the count
					}
				}
			}
		})
	}
	b.Cleanup(func() { cancel(); r.wg.Wait() })
	return r
}

// wait blocks until the subscribers received want events in all.
func (r *row1Env) wait(b *testing.B, want int64) {
	deadline := time.After(time.Minute)
	for r.got.Load() < want {
		select {
		case <-r.done: // perhaps a stale signal of an earlier round: check again
		case <-deadline:
			b.Fatalf("only %d of %d deliveries arrived", r.got.Load(), want)
		}
	}
}

// BenchmarkRow1Batch publishes PublishBatch(100) (batch=100) or Publish
// (batch=1) of fresh events (ID, HLC, time and source filled by the
// manager; 64 bytes of data) to 1 or 10 subscribers and reports events/s
// until every subscriber has every event, the process's CPU time per event
// (cpu-ns/event) and the publisher's own (pub-cpu-ns/event: its thread's
// CPU time, what a change to the publish path moves; the process's total
// also counts the subscribers' spinning). The events are reset and reused
// 100,000 events later, when no queue can hold them any more.
func BenchmarkRow1Batch(b *testing.B) {
	for _, batch := range []int{100, 1} {
		for _, subs := range []int{1, 10} {
			b.Run(fmt.Sprintf("batch=%d/subs=%d", batch, subs), func(b *testing.B) {
				benchRow1(b, batch, subs)
			})
		}
	}
}

func benchRow1(b *testing.B, batch, subs int) {
	r := newRow1Env(b, subs)
	data := make([]byte, 64)
	slab := make([]event.Event, 100_000)
	evs := make([]*event.Event, batch)
	ctx := context.Background()
	// The slab's memory is marked now, not by a collection in the timed
	// loop (as bench/ collects its setup's garbage before timing).
	runtime.GC()
	b.ReportAllocs()
	var sent int64
	// The publisher's own CPU time per event is its cost, whatever the
	// subscribers' spinning does to the process's total.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pub0 := cputime.Thread()
	cpu0 := cputime.Now()
	t0 := time.Now()
	for b.Loop() {
		off := int(sent) % len(slab)
		for i := range evs {
			slab[off+i] = event.Event{Type: "bench.evt", Subject: "/data/file.txt", Data: data}
			evs[i] = &slab[off+i]
		}
		var err error
		if batch == 1 {
			_, err = r.e.m.Publish(ctx, evs[0])
		} else {
			err = r.e.m.PublishBatch(ctx, evs)
		}
		if err != nil {
			b.Fatal(err)
		}
		sent += int64(len(evs))
	}
	pub := cputime.Thread() - pub0
	r.want.Store(sent * int64(subs))
	r.wait(b, sent*int64(subs))
	el := time.Since(t0)
	cpu := cputime.Now() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(sent)/el.Seconds(), "events/s")
	// The CPU time of the whole process per event: what a change costs,
	// less disturbed by other load than events/s.
	b.ReportMetric(float64(cpu)/float64(sent), "cpu-ns/event")
	b.ReportMetric(float64(pub)/float64(sent), "pub-cpu-ns/event")
}

// BenchmarkRow1Latency publishes one event at a time with Publish to 1 or
// 10 subscribers, the next once every subscriber has the last (the
// publisher blocks on a channel, as in bench/), and reports p50 and p99
// of the delay from the start of Publish to each subscriber holding the
// event.
func BenchmarkRow1Latency(b *testing.B) {
	for _, subs := range []int{1, 10} {
		b.Run(fmt.Sprint("subs=", subs), func(b *testing.B) {
			r := newRow1Env(b, subs)
			data := make([]byte, 64)
			ctx := context.Background()
			r.measure.Store(true)
			b.ReportAllocs()
			var n int64
			cpu0 := cputime.Now()
			for b.Loop() {
				n++
				r.want.Store(n * int64(subs))
				r.start.Store(nanotime())
				if _, err := r.e.m.Publish(ctx, &event.Event{Type: "bench.evt", Subject: "/data/file.txt", Data: data}); err != nil {
					b.Fatal(err)
				}
				r.wait(b, n*int64(subs))
			}
			cpu := cputime.Now() - cpu0
			b.StopTimer()
			r.measure.Store(false)
			b.ReportMetric(float64(cpu)/float64(n), "cpu-ns/publish")
			var all []int64
			for i := range r.lat {
				// A subscriber appends only while measure is set; it has
				// made its last append before the last wait returned.
				all = append(all, r.lat[i]...)
			}
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)/2]), "p50-ns")
				b.ReportMetric(float64(all[len(all)*99/100]), "p99-ns")
			}
		})
	}
}
