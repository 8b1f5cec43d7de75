package api

import (
	"context"
	"net/http/httptest"
	"runtime/trace"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// BenchmarkPublishStreamLatency publishes one event at a time through the
// Go SDK (one POST) with fsync=never and waits for one SSE subscriber to
// receive it, as row 2 of bench/run measures end-to-end latency. It
// reports the p50 and p99 of the round trip in µs.
func BenchmarkPublishStreamLatency(b *testing.B) {
	dir := b.TempDir()
	j, err := journal.Open(journal.Options{Dir: dir + "/journal", Fsync: journal.FsyncNever, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Source: "semprop://bench", Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	s := New(Options{Manager: m, Logger: quiet})
	s.SetReady(true, "")
	hs := httptest.NewServer(s)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan time.Time, 1)
	done := make(chan struct{})
	c := client.New(hs.URL, "")
	go func() {
		defer close(done)
		_ = c.Stream(ctx, client.Selector{Type: "bench.>"}, j.LastSeq(), func(*event.Event) error {
			got <- time.Now()
			return nil
		})
	}()
	b.Cleanup(func() {
		cancel()
		s.Close()
		hs.Close()
		<-done
		m.Close()
		j.Close()
	})
	data := []byte(`{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	// one returns the round trip, the time to the POST's answer and the
	// time to the delivery.
	one := func() (rt, post, recv time.Duration) {
		trace.Log(ctx, "iter", "start")
		defer trace.Log(ctx, "iter", "end")
		start := time.Now()
		if _, err := c.Publish(ctx, &event.Event{Type: "bench.net", Source: "bench", Subject: "/data/file.txt", DataContentType: "application/json", Data: data}); err != nil {
			b.Fatal(err)
		}
		post = time.Since(start)
		select {
		case at := <-got:
			recv = at.Sub(start)
		case <-time.After(10 * time.Second):
			b.Fatal("no delivery within 10s")
		}
		return time.Since(start), post, recv
	}
	for range 50 { // warm the connections
		one()
	}
	var lat, posts, recvs []time.Duration
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		rt, post, recv := one()
		lat, posts, recvs = append(lat, rt), append(posts, post), append(recvs, recv)
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(len(lat)), "cpu-ns/op")
	pct := func(d []time.Duration, p int) float64 {
		slices.Sort(d)
		return float64(d[(len(d)-1)*p/100].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(lat, 50), "p50-µs")
	b.ReportMetric(pct(lat, 99), "p99-µs")
	b.ReportMetric(pct(posts, 50), "post-p50-µs")
	b.ReportMetric(pct(recvs, 50), "recv-p50-µs")
	b.ReportMetric(pct(posts, 99), "post-p99-µs")
	b.ReportMetric(pct(recvs, 99), "recv-p99-µs")
}

// BenchmarkIngestSDK is row 2's ingest of bench/run: 4 publishers sharing
// one Go SDK client post batches of 1,000 events (fsync=never); one op is
// one batch. Reports events/s.
func BenchmarkIngestSDK(b *testing.B) {
	dir := b.TempDir()
	j, err := journal.Open(journal.Options{Dir: dir + "/journal", Fsync: journal.FsyncNever, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Source: "semprop://bench", Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	s := New(Options{Manager: m, Logger: quiet})
	s.SetReady(true, "")
	hs := httptest.NewServer(s)
	b.Cleanup(func() { s.Close(); hs.Close(); m.Close(); j.Close() })
	c := client.New(hs.URL, "")
	data := []byte(`{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	const batch = 1000
	b.ReportAllocs()
	b.SetParallelism(2) // 4 publishers on 2 CPUs, as in bench/run
	start, cpu0 := time.Now(), cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		evs := make([]*event.Event, batch)
		for pb.Next() {
			for i := range evs {
				evs[i] = &event.Event{Type: "bench.net", Source: "bench", Subject: "/data/file.txt", DataContentType: "application/json", Data: data}
			}
			if _, err := c.PublishBatch(context.Background(), evs); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N*batch), "cpu-ns/event")
}

// cpuTime is the CPU time (user and system) the process used so far: on a
// loaded machine it moves less than the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
