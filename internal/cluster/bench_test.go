package cluster

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	gometrics "github.com/hashicorp/go-metrics"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// benchEvents returns n events whose binary encoding (with a seq of up to
// 3 bytes) is size bytes.
func benchEvents(tb testing.TB, n, size int) []*event.Event {
	now := time.Now()
	proto := event.Event{ID: event.NewID(), Seq: 1 << 20, Type: "bench.event", Subject: "/b",
		HLC: event.HLC{Wall: now.UnixNano()}, Time: now, Source: "semprop://bench"}
	for range 3 {
		b, _ := proto.AppendBinary(nil)
		if pad := len(proto.Data) + size - len(b); pad >= 0 && len(b) != size {
			proto.Data = make([]byte, pad)
		}
	}
	if b, _ := proto.AppendBinary(nil); len(b) != size {
		tb.Fatalf("bench event encodes to %d bytes, want %d", len(b), size)
	}
	proto.Seq = 0
	evs := make([]*event.Event, n)
	store := make([]event.Event, n)
	for i := range evs {
		store[i] = proto
		store[i].ID = event.NewID()
		evs[i] = &store[i]
	}
	return evs
}

// publishBench drives m with `workers` goroutines, each publishing batches
// of `batch` fresh 100-byte events, and reports events/s and the commit
// latency of each PublishBatch call. It returns the events published.
func publishBench(b *testing.B, m *propagate.Manager, workers, batch int) int {
	b.ReportAllocs()
	var (
		mu   sync.Mutex
		lats []time.Duration
	)
	ops := make(chan struct{}, workers)
	var wg sync.WaitGroup
	var errs []error
	for range workers {
		wg.Go(func() {
			var local []time.Duration
			for range ops {
				evs := benchEvents(b, batch, 100)
				start := time.Now()
				if err := m.PublishBatch(context.Background(), evs); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				local = append(local, time.Since(start))
			}
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		})
	}
	n := 0
	for b.Loop() {
		ops <- struct{}{}
		n++
	}
	close(ops)
	wg.Wait()
	b.StopTimer()
	if len(errs) > 0 {
		b.Fatalf("%d publishes failed, first: %v", len(errs), errs[0])
	}
	slices.Sort(lats)
	b.ReportMetric(float64(n*batch)/b.Elapsed().Seconds(), "events/s")
	if len(lats) > 0 {
		b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99-µs")
	}
	return n * batch
}

// BenchmarkPublish compares, in one run, the local (single-node) sequencer
// with a 3-node Raft cluster on loopback (mutual TLS on the Raft port;
// BENCH_PLAINTEXT=1 for plaintext); every event is 100 bytes and is
// acknowledged after fsync (the single node: its journal's; the cluster:
// raft-wal's on a majority, the journals fsyncing in the background).
// BENCH_RAFT_METRICS=1 logs raft's own timings of the cluster runs (commit
// time, a follower's time to answer an AppendEntries, ...; go-metrics
// samples in ms), to see where an acknowledgement's time goes.
func BenchmarkPublish(b *testing.B) {
	for _, shape := range []struct{ workers, batch int }{{1, 1}, {4, 10}, {64, 1}, {16, 100}, {8, 1000}, {32, 1000}} {
		name := fmt.Sprintf("workers=%d/batch=%d", shape.workers, shape.batch)
		b.Run("single-node/"+name, func(b *testing.B) {
			j, err := journal.Open(journal.Options{Dir: filepath.Join(b.TempDir(), "j"), Logger: quietLog})
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			m, err := propagate.New(propagate.Options{Journal: j, Logger: quietLog})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			publishBench(b, m, shape.workers, shape.batch)
		})
		b.Run("raft-3/"+name, func(b *testing.B) {
			if d, err := time.ParseDuration(os.Getenv("BENCH_JOURNAL_INTERVAL")); err == nil {
				old := testJournalInterval
				testJournalInterval = d
				defer func() { testJournalInterval = old }()
			}
			if os.Getenv("BENCH_JOURNAL_NOSYNC") != "" {
				testJournalFsync = journal.FsyncNever
				defer func() { testJournalFsync = journal.FsyncInterval }()
			}
			c := newCluster(b, 3, func(cfg *Config) {
				cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = time.Second, time.Second, 500*time.Millisecond
				if d, err := time.ParseDuration(os.Getenv("BENCH_MAX_DELAY")); err == nil {
					cfg.MaxDelay = d
				}
				if n, err := strconv.Atoi(os.Getenv("BENCH_MAX_BATCH")); err == nil {
					cfg.MaxBatch = n
				}
				if n, err := strconv.Atoi(os.Getenv("BENCH_MAX_INFLIGHT")); err == nil {
					cfg.MaxInflight = n
				}
				if os.Getenv("BENCH_NO_FOLLOWER_DECODE") != "" {
					cfg.DeliverWanted = func() bool { return false }
				}
				if os.Getenv("BENCH_PLAINTEXT") != "" {
					cfg.Credentials = nil // the Raft port without TLS, as before cluster credentials
				}
			})
			leader := c.node(c.leader())
			entries := leader.n.r.AppliedIndex()
			var sink *gometrics.InmemSink
			if os.Getenv("BENCH_RAFT_METRICS") != "" {
				sink = gometrics.NewInmemSink(time.Hour, time.Hour)
				cfg := gometrics.DefaultConfig("")
				cfg.EnableHostname, cfg.EnableRuntimeMetrics, cfg.EnableServiceLabel = false, false, false
				gometrics.NewGlobal(cfg, sink)
			}
			events := publishBench(b, leader.m, shape.workers, shape.batch)
			if sink != nil {
				for _, iv := range sink.Data() {
					for _, k := range slices.Sorted(maps.Keys(iv.Samples)) {
						s := iv.Samples[k]
						b.Logf("%-60s n=%7d mean=%8.3f max=%8.3f", k, s.Count, s.Sum/float64(s.Count), s.Max)
					}
				}
				gometrics.NewGlobal(gometrics.DefaultConfig(""), &gometrics.BlackholeSink{})
			}
			if entries = leader.n.r.AppliedIndex() - entries; entries > 0 {
				b.ReportMetric(float64(events)/float64(entries), "events/entry")
			}
			c.stopAll()
		})
	}
}
