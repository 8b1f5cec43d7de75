package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

var payload100 = bytes.Repeat([]byte{'p'}, 100)

// workload is the result of runWorkers.
type workload struct {
	rate     float64 // acknowledged units per second (events)
	p50, p99 float64 // µs per call
	errs     int64
}

// runWorkers runs fn on workers goroutines until d has passed, and returns
// the rate of units (each call acknowledges perCall units) and the call
// latency percentiles. A failed call is counted, not retried.
func runWorkers(ctx context.Context, workers int, d time.Duration, perCall int, fn func(ctx context.Context) error) workload {
	var (
		mu    sync.Mutex
		lats  []time.Duration
		calls atomic.Int64
		errs  atomic.Int64
		wg    sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			var local []time.Duration
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				if err := fn(ctx); err != nil {
					errs.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
				calls.Add(1)
			}
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	el := time.Since(start)
	return workload{rate: float64(calls.Load()*int64(perCall)) / el.Seconds(), p50: us(pct(lats, 50)), p99: us(pct(lats, 99)), errs: errs.Load()}
}

// jetStream1 starts one JetStream server with file storage in dir; sync
// always makes it fsync every write before it acknowledges.
func jetStream1(dir string) (*server.Server, *nats.Conn, jetstream.JetStream, error) {
	s, err := startNATS(&server.Options{Port: -1, JetStream: true, StoreDir: dir, SyncAlways: true, DontListen: true})
	if err != nil {
		return nil, nil, nil, err
	}
	nc, err := nats.Connect("", nats.InProcessServer(s))
	if err != nil {
		s.Shutdown()
		return nil, nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		s.Shutdown()
		return nil, nil, nil, err
	}
	return s, nc, js, nil
}

func rowDurability(ctx context.Context, c *cfg, rep *report) error {
	const workers = 64
	d := 5 * time.Second
	if c.quick {
		d = time.Second
	}
	rep.note(7, fmt.Sprintf("%d concurrent publishers for %v per measurement, each publishing one 100-byte payload per call and waiting for its acknowledgement; an ack means fsynced (fdatasync) on both sides. All files on the same disk (%s).", workers, d, c.tmp))
	rep.note(7, "semprop journal = journal.Append with fsync=always (group commit: concurrent appenders share one fdatasync); semprop manager = propagate.Manager.Publish of a 100-byte-data event over the same journal (ID, HLC, encoding, routing included).")
	rep.note(7, "JetStream: nats-server v2.15.2 embedded, one server, JetStream file storage with sync always (SyncAlways), stream R1, in-process client connection shared by the publishers (jetstream.Publish waits for the PubAck).")
	var perFsync []string
	var ja, ja50, ja99, mp, mp50, mp99, js, js50, js99 []float64
	for r := range c.reps {
		steps := []func() error{
			func() error {
				j, err := journal.Open(journal.Options{Dir: filepath.Join(c.tmp, fmt.Sprintf("dur-j-%d", r)), Fsync: journal.FsyncAlways, Logger: quiet})
				if err != nil {
					return err
				}
				defer j.Close()
				w := runWorkers(ctx, workers, d, 1, func(ctx context.Context) error { _, err := j.Append(ctx, payload100); return err })
				ja, ja50, ja99 = append(ja, w.rate), append(ja50, w.p50), append(ja99, w.p99)
				st := j.Stats()
				perFsync = append(perFsync, fmt.Sprintf("%.1f", float64(st.LastSeq)/float64(max(st.Fsyncs, 1))))
				return errsOf(w)
			},
			func() error {
				dir := filepath.Join(c.tmp, fmt.Sprintf("dur-m-%d", r))
				j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: journal.FsyncAlways, Logger: quiet})
				if err != nil {
					return err
				}
				defer j.Close()
				m, err := propagate.New(propagate.Options{Journal: j, Source: "semprop://bench", Logger: quiet})
				if err != nil {
					return err
				}
				defer m.Close()
				w := runWorkers(ctx, workers, d, 1, func(ctx context.Context) error {
					_, err := m.Publish(ctx, &event.Event{Type: "bench.dur", Subject: "/data/file.txt", Data: payload100})
					return err
				})
				mp, mp50, mp99 = append(mp, w.rate), append(mp50, w.p50), append(mp99, w.p99)
				return errsOf(w)
			},
			func() error {
				s, nc, jsx, err := jetStream1(filepath.Join(c.tmp, fmt.Sprintf("dur-js-%d", r)))
				if err != nil {
					return err
				}
				defer func() { nc.Close(); s.Shutdown(); s.WaitForShutdown() }()
				if _, err := jsx.CreateStream(ctx, jetstream.StreamConfig{Name: "DUR", Subjects: []string{"dur.>"}, Storage: jetstream.FileStorage, Replicas: 1}); err != nil {
					return err
				}
				w := runWorkers(ctx, workers, d, 1, func(ctx context.Context) error { _, err := jsx.Publish(ctx, "dur.x", payload100); return err })
				js, js50, js99 = append(js, w.rate), append(js50, w.p50), append(js99, w.p99)
				return errsOf(w)
			},
		}
		if r%2 == 1 {
			steps[0], steps[2] = steps[2], steps[0]
		}
		for _, st := range steps {
			if err := st(); err != nil {
				return err
			}
		}
		os.RemoveAll(filepath.Join(c.tmp, fmt.Sprintf("dur-j-%d", r)))
	}
	rep.note(7, "semprop journal.Append: events per fdatasync in each repetition (group commit): "+strings.Join(perFsync, ", "))
	for _, v := range []struct {
		name        string
		s, s50, s99 []float64
	}{{"journal.Append", ja, ja50, ja99}, {"manager.Publish", mp, mp50, mp99}} {
		rep.add(&line{row: 7, name: "acked events/s, 64 publishers", unit: "ev/s", better: higher, semprop: v.name, peer: "JetStream R1 file, sync always", s: v.s, p: js})
		rep.add(&line{row: 7, name: "ack latency p50", unit: "µs", better: lower, semprop: v.name, peer: "JetStream R1 file, sync always", s: v.s50, p: js50})
		rep.add(&line{row: 7, name: "ack latency p99", unit: "µs", better: lower, semprop: v.name, peer: "JetStream R1 file, sync always", s: v.s99, p: js99})
	}
	return nil
}

func errsOf(w workload) error {
	if w.errs > 0 {
		return fmt.Errorf("%d calls failed", w.errs)
	}
	return nil
}
