package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	rdebug "runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// dataJSON is the 64-byte JSON data of every network event.
var dataJSON = []byte(`{"pad":"` + string(make64()) + `"}`)

func make64() []byte {
	b := make([]byte, payloadSize-10)
	for i := range b {
		b[i] = 'x'
	}
	return b
}

// sempropHTTP is a semprop daemon's core (journal, manager, HTTP API) on a
// loopback listener, driven through the Go SDK (client).
type sempropHTTP struct {
	dir   string // removed by close
	j     *journal.Journal
	m     *propagate.Manager
	api   *api.Server
	hs    *http.Server
	c     *client.Client
	batch int
	// batches are publishers' reusable batches of events (*[]*event.Event).
	batches sync.Pool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func newSempropHTTP(dir string, fsync journal.FsyncPolicy, batch int) (*sempropHTTP, error) {
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: fsync, Logger: quiet})
	if err != nil {
		return nil, err
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Source: "semprop://bench", Logger: quiet})
	if err != nil {
		j.Close()
		return nil, err
	}
	s := api.New(api.Options{Manager: m, Logger: quiet})
	s.SetReady(true, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		m.Close()
		j.Close()
		return nil, err
	}
	p := &sempropHTTP{dir: dir, j: j, m: m, api: s, hs: &http.Server{Handler: s}, batch: batch}
	p.wg.Go(func() { _ = p.hs.Serve(ln) })
	p.c = client.New("http://"+ln.Addr().String(), "")
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

func (p *sempropHTTP) newEvent() *event.Event {
	return &event.Event{Type: "bench.net", Source: "bench", Subject: "/data/file.txt", DataContentType: "application/json", Data: dataJSON}
}

func (p *sempropHTTP) subscribe(n int, sk *sink) error {
	after := p.j.LastSeq()
	for i := range n {
		p.wg.Go(func() {
			_ = p.c.Stream(p.ctx, client.Selector{Type: "bench.>"}, after, func(*event.Event) error {
				sk.recv(i, 1)
				return nil
			})
		})
	}
	return nil
}

func (p *sempropHTTP) publishOne(ctx context.Context) error {
	_, err := p.c.Publish(ctx, p.newEvent())
	return err
}

// publishBatch publishes k events in one POST. A publisher reuses the
// Event values of its last batch (client.PublishBatch sends a completed
// copy of each, with a new id, and changes none), as the NATS publisher
// reuses its payload.
func (p *sempropHTTP) publishBatch(ctx context.Context, k int) error {
	bp, _ := p.batches.Get().(*[]*event.Event)
	if bp == nil || len(*bp) < k {
		evs := make([]*event.Event, k)
		for i := range evs {
			evs[i] = p.newEvent()
		}
		bp = &evs
	}
	defer p.batches.Put(bp)
	evs := (*bp)[:k]
	seqs, err := p.c.PublishBatch(ctx, evs)
	if err == nil && len(seqs) != k {
		err = fmt.Errorf("%d seqs for %d events", len(seqs), k)
	}
	return err
}

// prepareAll: the HTTP client builds each batch as it sends it, as a
// NATS client encodes each message.
func (p *sempropHTTP) prepareAll(int) {}

func (p *sempropHTTP) publishAll(ctx context.Context, m int) error {
	for i := 0; i < m; i += p.batch {
		if err := p.publishBatch(ctx, min(p.batch, m-i)); err != nil {
			return err
		}
	}
	return nil
}

func (p *sempropHTTP) close() {
	p.cancel()
	p.api.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = p.hs.Shutdown(ctx)
	cancel()
	_ = p.hs.Close()
	p.wg.Wait()
	p.m.Close()
	p.j.Close()
	// The journal goes with the side: left behind, its gigabytes of dirty
	// pages (fsync=never) would be written back while later measurements
	// run, semprop's and its peers' alike.
	os.RemoveAll(p.dir)
}

// natsBatch publishes k messages on nc and waits for the server to have
// processed them (Flush: a PING/PONG round trip).
func natsBatch(nc *nats.Conn, data []byte, k int) error {
	for range k {
		if err := nc.Publish("bench.net", data); err != nil {
			return err
		}
	}
	return nc.Flush()
}

// daemonGCPercent is semprop's daemon's garbage collector target
// (daemonGCPercent in internal/daemon, which bench cannot import without
// taking in every dependency of the daemon).
const daemonGCPercent = 400

// serverGC sets the garbage collector's target to what the side's server
// runs with and returns what restores the previous one: semprop's daemon
// raises it, nats-server keeps Go's default (100). With GOGC set in the
// environment both sides keep it.
func serverGC(semprop bool) (restore func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	pct := 100
	if semprop {
		pct = daemonGCPercent
	}
	prev := rdebug.SetGCPercent(pct)
	return func() { rdebug.SetGCPercent(prev) }
}

// gcNote is written under the rows whose sides run with serverGC.
var gcNote = fmt.Sprintf("garbage collector: each side runs with its server's own default target, set before the side and restored after: semprop's daemon sets GOGC=%d (unless GOGC is set), nats-server leaves Go's default of 100 (with GOGC set in the environment, both run with it).", daemonGCPercent)

func rowNetwork(ctx context.Context, c *cfg, rep *report) error {
	const publishers, batch = 4, 1000
	d, m, k := 5*time.Second, 200_000, 3000
	if c.quick {
		d, m, k = 700*time.Millisecond, 10_000, 200
	}
	rep.note(2, "semprop: journal + propagate.Manager + internal/api HTTP server on 127.0.0.1, driven by the Go SDK (client.PublishBatch / client.Publish: CloudEvents JSON; client.Stream: SSE, each event decoded from JSON). SSE carries only durable events: with fsync=never durable = written to the OS, with fsync=always = fdatasync'ed (group commit).")
	rep.note(2, "NATS: nats-server v2.15.2 embedded, clients over TCP on 127.0.0.1 (nats.go v1.55.0); NATS core stores nothing and its subscriber gets raw bytes (no decoding); server max_pending 2 GiB as in row 1.")
	rep.note(2, fmt.Sprintf("ingest = %d publishers for %v, each sending batches of %d events and waiting for the answer (semprop: one POST of a CloudEvents batch, answered once durable, the publisher reusing its batch's Event values — the SDK sends a copy of each with a new id — as the NATS publisher reuses its payload; NATS: %d Publish calls then Flush, a round trip that returns once the server processed them). %d-byte JSON data per event.", publishers, d, batch, batch, payloadSize))
	rep.note(2, gcNote)
	rep.note(2, "each semprop measurement's journal directory is removed when it ends (as row 1's are), so that gigabytes of pages written with fsync=never are not written back to disk during later measurements.")
	rep.note(2, fmt.Sprintf("end-to-end throughput = %d events from one publisher (semprop: POSTs of %d) until one subscriber (SSE / NATS subscription on its own connection) received all; latency = one event at a time from the publish call's start to the subscriber's callback (%d events).", m, batch, k))
	type side struct {
		name                    string
		ingest, e2e, p50s, p99s []float64
	}
	sides := []*side{{name: "HTTP+SSE, fsync=never"}, {name: "HTTP+SSE, fsync=always"}, {name: "NATS TCP"}}
	for r := range c.reps {
		for i, sd := range sides {
			if r%2 == 1 {
				sd = sides[len(sides)-1-i]
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			restoreGC := serverGC(sd.name != "NATS TCP")
			var mk func() (pubsub, error)
			var ingest func() (workload, error)
			if sd.name == "NATS TCP" {
				mk = func() (pubsub, error) { return newNATSPS(false) }
				ingest = func() (workload, error) {
					p, err := newNATSPS(false)
					if err != nil {
						return workload{}, err
					}
					defer p.close()
					conns := make(chan *nats.Conn, publishers)
					for range publishers {
						nc, err := nats.Connect(p.srv.ClientURL())
						if err != nil {
							return workload{}, err
						}
						defer nc.Close()
						conns <- nc
					}
					return runWorkers(ctx, publishers, d, batch, func(context.Context) error {
						nc := <-conns
						defer func() { conns <- nc }()
						return natsBatch(nc, p.data, batch)
					}), nil
				}
			} else {
				fsync := journal.FsyncNever
				if sd.name == "HTTP+SSE, fsync=always" {
					fsync = journal.FsyncAlways
				}
				mk = func() (pubsub, error) {
					dir, err := os.MkdirTemp(c.tmp, "net-")
					if err != nil {
						return nil, err
					}
					return newSempropHTTP(dir, fsync, batch)
				}
				ingest = func() (workload, error) {
					ps, err := mk()
					if err != nil {
						return workload{}, err
					}
					defer ps.close()
					p := ps.(*sempropHTTP)
					return runWorkers(ctx, publishers, d, batch, func(ctx context.Context) error { return p.publishBatch(ctx, batch) }), nil
				}
			}
			w, err := ingest()
			if err == nil {
				err = errsOf(w)
			}
			if err != nil {
				return fmt.Errorf("%s ingest: %w", sd.name, err)
			}
			sd.ingest = append(sd.ingest, w.rate)
			err = func() error {
				ps, err := mk()
				if err != nil {
					return err
				}
				defer ps.close()
				v, err := measureThroughput(ctx, ps, 1, m)
				sd.e2e = append(sd.e2e, v)
				return err
			}()
			if err != nil {
				return fmt.Errorf("%s throughput: %w", sd.name, err)
			}
			err = func() error {
				ps, err := mk()
				if err != nil {
					return err
				}
				defer ps.close()
				a, b, err := measureLatency(ctx, ps, 1, k)
				sd.p50s, sd.p99s = append(sd.p50s, a), append(sd.p99s, b)
				return err
			}()
			restoreGC()
			if err != nil {
				return fmt.Errorf("%s latency: %w", sd.name, err)
			}
		}
	}
	n := sides[2]
	for _, s := range sides[:2] {
		rep.add(&line{row: 2, name: fmt.Sprintf("ingest, %d publishers, batches of %d", publishers, batch), unit: "ev/s", better: higher, semprop: s.name, peer: n.name, s: s.ingest, p: n.ingest})
		rep.add(&line{row: 2, name: "end-to-end throughput, 1 subscriber", unit: "ev/s", better: higher, semprop: s.name, peer: n.name, s: s.e2e, p: n.e2e})
		rep.add(&line{row: 2, name: "end-to-end latency p50", unit: "µs", better: lower, semprop: s.name, peer: n.name, s: s.p50s, p: n.p50s})
		rep.add(&line{row: 2, name: "end-to-end latency p99", unit: "µs", better: lower, semprop: s.name, peer: n.name, s: s.p99s, p: n.p99s})
	}
	return nil
}

var _ = errors.New
