package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
	"github.com/semprop/semprop/internal/route"
)

const (
	payloadSize = 64   // bytes of data per event / message
	routeCount  = 1000 // non-matching wildcard routes present in row 1
)

var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) }

// sink counts deliveries and, while measuring latency, records for each
// subscriber the time from the publish's start to the delivery. A waiter
// blocks (no spinning: spinning would steal one of the two cores from the
// system under test) until the count reaches its target.
type sink struct {
	got     atomic.Int64
	want    atomic.Int64 // 0: nobody waits
	done    chan struct{}
	start   atomic.Int64
	measure atomic.Bool
	lat     [][]time.Duration // per subscriber, appended by its goroutine only
}

func newSink(subs int) *sink {
	return &sink{lat: make([][]time.Duration, subs), done: make(chan struct{}, 1)}
}

func (s *sink) recv(i, n int) {
	if s.measure.Load() {
		s.lat[i] = append(s.lat[i], time.Duration(nanotime()-s.start.Load()))
	}
	got := s.got.Add(int64(n))
	if w := s.want.Load(); w > 0 && got >= w && s.want.CompareAndSwap(w, 0) {
		s.done <- struct{}{}
	}
}

// expect must be called before the publish whose deliveries wait waits for.
func (s *sink) expect(want int64) { s.want.Store(want) }

// wait blocks until the count set by expect is reached or d has passed.
func (s *sink) wait(want int64, d time.Duration) bool {
	// The recv that reaches the target signals exactly once.
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.done:
		return true
	case <-t.C:
		return s.got.Load() >= want
	}
}

func (s *sink) latencies() []time.Duration {
	var all []time.Duration
	for _, l := range s.lat {
		all = append(all, l...)
	}
	return all
}

// pubsub is one system under test for rows 1 and 2.
type pubsub interface {
	// subscribe starts n subscribers delivering to sk.
	subscribe(n int, sk *sink) error
	// publishOne publishes one event and returns when the publish call returns.
	publishOne(ctx context.Context) error
	// prepareAll readies what publishAll(m) publishes, before the clock
	// starts (a publisher that has its events in hand).
	prepareAll(m int)
	// publishAll publishes m events as fast as the system allows.
	publishAll(ctx context.Context, m int) error
	close()
}

// ---- semprop propagation manager ----

type sempropPS struct {
	j     *journal.Journal
	m     *propagate.Manager
	batch int // publishAll batch size; 1 = Publish per event
	data  []byte
	// prepared are the events of the next publishAll (prepareAll).
	prepared []*event.Event
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	subs     []*propagate.Subscription
}

func newSempropPS(dir string, fsync journal.FsyncPolicy, batch int) (*sempropPS, error) {
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: fsync, Logger: quiet})
	if err != nil {
		return nil, err
	}
	m, err := propagate.New(propagate.Options{Journal: j, Source: "semprop://bench", Logger: quiet})
	if err != nil {
		j.Close()
		return nil, err
	}
	p := &sempropPS{j: j, m: m, batch: batch, data: make([]byte, payloadSize)}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	// The 1,000 wildcard routes: subscriptions that match nothing published.
	for i := range routeCount {
		pat := fmt.Sprintf("route%d.*", i)
		if i%2 == 1 {
			pat = fmt.Sprintf("route%d.x.>", i)
		}
		s, err := m.Subscribe(propagate.SubscribeOptions{Selector: route.Selector{Type: pat}, Queue: 16})
		if err != nil {
			return nil, err
		}
		p.subs = append(p.subs, s)
	}
	return p, nil
}

func (p *sempropPS) subscribe(n int, sk *sink) error {
	for i := range n {
		s, err := p.m.Subscribe(propagate.SubscribeOptions{Selector: route.Selector{Type: "bench.>"}, Queue: 1 << 16, Policy: propagate.PolicyBlock, BlockTimeout: time.Minute})
		if err != nil {
			return err
		}
		p.subs = append(p.subs, s)
		p.wg.Go(func() {
			buf := make([]*event.Event, 1024)
			for {
				k, err := s.NextBatch(p.ctx, buf)
				if err != nil {
					return
				}
				sk.recv(i, k)
			}
		})
	}
	return nil
}

func (p *sempropPS) newEvent() *event.Event {
	return &event.Event{Type: "bench.evt", Subject: "/data/file.txt", Data: p.data}
}

func (p *sempropPS) publishOne(ctx context.Context) error {
	_, err := p.m.Publish(ctx, p.newEvent())
	return err
}

// prepareAll allocates the events before the clock starts; IDs, times and
// HLCs are assigned by the manager while publishing.
func (p *sempropPS) prepareAll(m int) {
	p.prepared = make([]*event.Event, m)
	store := make([]event.Event, m)
	for i := range p.prepared {
		store[i] = event.Event{Type: "bench.evt", Subject: "/data/file.txt", Data: p.data}
		p.prepared[i] = &store[i]
	}
}

func (p *sempropPS) publishAll(ctx context.Context, m int) error {
	if len(p.prepared) != m {
		p.prepareAll(m)
	}
	evs := p.prepared
	p.prepared = nil
	return p.publishEvents(ctx, evs)
}

func (p *sempropPS) publishEvents(ctx context.Context, evs []*event.Event) error {
	if p.batch <= 1 {
		for _, ev := range evs {
			if _, err := p.m.Publish(ctx, ev); err != nil {
				return err
			}
		}
		return nil
	}
	for i := 0; i < len(evs); i += p.batch {
		if err := p.m.PublishBatch(ctx, evs[i:min(i+p.batch, len(evs))]); err != nil {
			return err
		}
	}
	return nil
}

func (p *sempropPS) close() {
	p.cancel()
	for _, s := range p.subs {
		s.Close()
	}
	p.wg.Wait()
	p.m.Close()
	p.j.Close()
}

// ---- NATS core, embedded ----

type natsPS struct {
	srv       *server.Server
	pub, sub  *nats.Conn
	routes    *nats.Conn
	data      []byte
	dropped   atomic.Int64
	subsCount int
	// connPerSub gives every subscriber its own connection (the server
	// then fans out to n clients) instead of one shared connection.
	connPerSub bool
	extra      []*nats.Conn
	connect    func() (*nats.Conn, error)
}

func startNATS(opts *server.Options) (*server.Server, error) {
	opts.NoLog, opts.NoSigs = true, true
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats-server not ready")
	}
	return s, nil
}

// newNATSPS starts an embedded server; inProcess connects through
// nats.InProcessServer (no socket), else over TCP on loopback.
func newNATSPS(inProcess bool) (*natsPS, error) {
	// MaxPending 2 GiB: the server never cuts a subscriber off as a slow
	// consumer (default 64 MiB of pending output), as semprop's blocking
	// subscriptions never lose events either.
	opts := &server.Options{Port: -1, DontListen: inProcess, MaxPending: 2 << 30}
	s, err := startNATS(opts)
	if err != nil {
		return nil, err
	}
	p := &natsPS{srv: s, data: make([]byte, payloadSize)}
	connect := func() (*nats.Conn, error) {
		if inProcess {
			return nats.Connect("", nats.InProcessServer(s))
		}
		return nats.Connect(s.ClientURL())
	}
	p.connect = connect
	errh := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if err == nats.ErrSlowConsumer {
			p.dropped.Add(1)
		}
	})
	_ = errh
	if p.pub, err = connect(); err != nil {
		p.close()
		return nil, err
	}
	if p.sub, err = connect(); err != nil {
		p.close()
		return nil, err
	}
	if p.routes, err = connect(); err != nil {
		p.close()
		return nil, err
	}
	for i := range routeCount {
		subj := fmt.Sprintf("route%d.*", i)
		if i%2 == 1 {
			subj = fmt.Sprintf("route%d.x.>", i)
		}
		if _, err := p.routes.Subscribe(subj, func(*nats.Msg) {}); err != nil {
			p.close()
			return nil, err
		}
	}
	if err := p.routes.Flush(); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *natsPS) subscribe(n int, sk *sink) error {
	for i := range n {
		nc := p.sub
		if p.connPerSub && i > 0 {
			var err error
			if nc, err = p.connect(); err != nil {
				return err
			}
			p.extra = append(p.extra, nc)
		}
		s, err := nc.Subscribe("bench.>", func(*nats.Msg) { sk.recv(i, 1) })
		if err != nil {
			return err
		}
		// No slow-consumer drops: semprop's subscribers block the publisher
		// instead of dropping in this row.
		if err := s.SetPendingLimits(-1, -1); err != nil {
			return err
		}
	}
	for _, nc := range append(p.extra, p.sub) {
		if err := nc.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func (p *natsPS) publishOne(context.Context) error { return p.pub.Publish("bench.evt", p.data) }

func (p *natsPS) prepareAll(int) {}

func (p *natsPS) publishAll(_ context.Context, m int) error {
	for range m {
		if err := p.pub.Publish("bench.evt", p.data); err != nil {
			return err
		}
	}
	return p.pub.Flush()
}

func (p *natsPS) close() {
	for _, c := range append([]*nats.Conn{p.pub, p.sub, p.routes}, p.extra...) {
		if c != nil {
			c.Close()
		}
	}
	p.srv.Shutdown()
	p.srv.WaitForShutdown()
}

// ---- Go channels (the floor) ----

type chanPS struct {
	chs []chan *event.Event
	ev  *event.Event
	wg  sync.WaitGroup
}

func (p *chanPS) subscribe(n int, sk *sink) error {
	for i := range n {
		ch := make(chan *event.Event, 1024)
		p.chs = append(p.chs, ch)
		p.wg.Go(func() {
			for range ch {
				sk.recv(i, 1)
			}
		})
	}
	p.ev = &event.Event{Type: "bench.evt", Subject: "/data/file.txt", Data: make([]byte, payloadSize)}
	return nil
}

func (p *chanPS) publishOne(context.Context) error {
	for _, ch := range p.chs {
		ch <- p.ev
	}
	return nil
}

func (p *chanPS) prepareAll(int) {}

func (p *chanPS) publishAll(_ context.Context, m int) error {
	for range m {
		for _, ch := range p.chs {
			ch <- p.ev
		}
	}
	return nil
}

func (p *chanPS) close() {
	for _, ch := range p.chs {
		close(ch)
	}
	p.wg.Wait()
}

// ---- the measurements ----

// measureThroughput publishes m events to subs subscribers and returns
// events published per second, timed until every subscriber has all m.
func measureThroughput(ctx context.Context, ps pubsub, subs, m int) (float64, error) {
	sk := newSink(subs)
	if err := ps.subscribe(subs, sk); err != nil {
		return 0, err
	}
	ps.prepareAll(m)
	runtime.GC()
	sk.expect(int64(m * subs))
	start := time.Now()
	if err := ps.publishAll(ctx, m); err != nil {
		return 0, err
	}
	if !sk.wait(int64(m*subs), 2*time.Minute) {
		return 0, fmt.Errorf("only %d of %d deliveries arrived", sk.got.Load(), m*subs)
	}
	return float64(m) / time.Since(start).Seconds(), nil
}

// measureLatency publishes k events one at a time (the next when every
// subscriber has the previous one) and returns p50 and p99 of the one-way
// latency over all deliveries, in µs.
func measureLatency(ctx context.Context, ps pubsub, subs, k int) (p50, p99 float64, err error) {
	sk := newSink(subs)
	if err := ps.subscribe(subs, sk); err != nil {
		return 0, 0, err
	}
	warm := min(k/10, 200)
	for i := range k + warm {
		if i == warm {
			sk.measure.Store(true)
		}
		sk.expect(int64((i + 1) * subs))
		sk.start.Store(nanotime())
		if err := ps.publishOne(ctx); err != nil {
			return 0, 0, err
		}
		if !sk.wait(int64((i+1)*subs), 30*time.Second) {
			return 0, 0, fmt.Errorf("event %d: only %d of %d deliveries arrived", i, sk.got.Load(), (i+1)*subs)
		}
	}
	lat := sk.latencies()
	return us(pct(lat, 50)), us(pct(lat, 99)), nil
}

var debug = os.Getenv("BENCH_DEBUG") != ""

func rowInProcess(ctx context.Context, c *cfg, rep *report) error {
	type counts struct{ subs, m, k int }
	cs := []counts{{1, 300_000, 5000}, {10, 100_000, 3000}, {100, 20_000, 1000}}
	if c.quick {
		cs = []counts{{1, 20_000, 300}, {10, 5_000, 200}, {100, 1_000, 50}}
	}
	if v := os.Getenv("BENCH_ROW1"); v != "" { // SUBS:M:K, for debugging one shape
		var cc counts
		if _, err := fmt.Sscanf(v, "%d:%d:%d", &cc.subs, &cc.m, &cc.k); err != nil {
			return fmt.Errorf("BENCH_ROW1=%q: want SUBS:M:K", v)
		}
		cs = []counts{cc}
	}
	rep.note(1, "semprop: propagate.Manager over a journal with fsync=never (every event is still encoded and written to the journal file; NATS core and the channels store nothing). Subscriptions use PolicyBlock with a 65,536-event queue and drain with NextBatch(1024).")
	rep.note(1, fmt.Sprintf("%d wildcard routes present (half `routeN.*`, half `routeN.x.>`, none matching): in semprop 1,000 extra live subscriptions with type-pattern selectors (compiled into the manager's routing trie), in NATS 1,000 subscriptions on a third connection. The channel baseline has no routing at all.", routeCount))
	rep.note(1, "NATS: nats-server v2.15.2 embedded with DontListen, clients via nats.InProcessServer (no socket): one publisher connection, one connection holding all subscribers (async callbacks, client pending limits unlimited and server max_pending raised from 64 MiB to 2 GiB, so NATS neither drops nor disconnects a slow subscriber; with the defaults it disconnected the 100-subscriber connection as a slow consumer), subject `bench.evt`, subscribers on `bench.>`.")
	rep.note(1, fmt.Sprintf("payload: %d bytes of data per event/message (semprop events also carry type, subject, ID, HLC, time, source, filled by the manager). semprop publisher events are allocated before the clock starts; NATS reuses one payload buffer.", payloadSize))
	rep.note(1, "every side's setup garbage is collected (runtime.GC) before its timed part.")
	rep.note(1, "throughput = published events/s, timed until every subscriber received all of them; semprop batched = PublishBatch of 100 events (NATS's client also batches in its write buffer); semprop single = one Publish per event (returns after the journal write).")
	rep.note(1, "latency = one event at a time, from the start of the publish call to the moment each subscriber goroutine holds it (p50/p99 over all deliveries); the publisher waits (blocked on a channel, no spinning) for all subscribers before the next event.")
	for _, cc := range cs {
		var sb, s1, nt, ct, sp50, sp99, np50, np99, cp50, cp99 []float64
		for r := range c.reps {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			dir, err := os.MkdirTemp(c.tmp, "inproc-")
			if err != nil {
				return err
			}
			run := func(mk func() (pubsub, error), f func(pubsub) error) error {
				ps, err := mk()
				if err != nil {
					return err
				}
				defer ps.close()
				// Collect the setup's garbage (semprop's 1,000 route
				// subscriptions rebuild the routing table 1,000 times) so
				// that no side pays for it inside the timed part.
				runtime.GC()
				return f(ps)
			}
			mkS := func(batch int) func() (pubsub, error) {
				return func() (pubsub, error) {
					d, err := os.MkdirTemp(dir, "s-")
					if err != nil {
						return nil, err
					}
					return newSempropPS(d, journal.FsyncNever, batch)
				}
			}
			mkN := func() (pubsub, error) {
				p, err := newNATSPS(true)
				if err == nil {
					p.connPerSub = os.Getenv("BENCH_NATS_CONNPERSUB") != ""
				}
				return p, err
			}
			mkC := func() (pubsub, error) { return &chanPS{}, nil }
			tput := func(dst *[]float64) func(pubsub) error {
				return func(ps pubsub) error {
					v, err := measureThroughput(ctx, ps, cc.subs, cc.m)
					*dst = append(*dst, v)
					return err
				}
			}
			lat := func(d50, d99 *[]float64) func(pubsub) error {
				return func(ps pubsub) error {
					a, b, err := measureLatency(ctx, ps, cc.subs, cc.k)
					*d50, *d99 = append(*d50, a), append(*d99, b)
					return err
				}
			}
			type step struct {
				name string
				f    func() error
			}
			steps := []step{
				{"semprop PublishBatch throughput", func() error { return run(mkS(100), tput(&sb)) }},
				{"semprop Publish throughput", func() error { return run(mkS(1), tput(&s1)) }},
				{"NATS throughput", func() error { return run(mkN, tput(&nt)) }},
				{"channels throughput", func() error { return run(mkC, tput(&ct)) }},
				{"semprop latency", func() error { return run(mkS(1), lat(&sp50, &sp99)) }},
				{"NATS latency", func() error { return run(mkN, lat(&np50, &np99)) }},
				{"channels latency", func() error { return run(mkC, lat(&cp50, &cp99)) }},
			}
			if r%2 == 1 { // alternate the order so drift in load hits both sides
				for i, j := 0, len(steps)-1; i < j; i, j = i+1, j-1 {
					steps[i], steps[j] = steps[j], steps[i]
				}
			}
			for _, st := range steps {
				t0 := time.Now()
				if err := st.f(); err != nil {
					return fmt.Errorf("%d subscribers, %s: %w", cc.subs, st.name, err)
				}
				if debug {
					fmt.Fprintf(os.Stderr, "   %d subs, %s: %v\n", cc.subs, st.name, time.Since(t0).Round(time.Millisecond))
				}
			}
			os.RemoveAll(dir)
		}
		n := cc.subs
		rep.add(&line{row: 1, name: fmt.Sprintf("throughput, %d sub(s)", n), unit: "ev/s", better: higher, semprop: "manager, PublishBatch(100)", peer: "NATS in-process", s: sb, p: nt})
		rep.add(&line{row: 1, name: fmt.Sprintf("throughput, %d sub(s)", n), unit: "ev/s", better: higher, semprop: "manager, Publish", peer: "NATS in-process", s: s1, p: nt})
		rep.add(&line{row: 1, name: fmt.Sprintf("throughput, %d sub(s)", n), unit: "ev/s", better: higher, semprop: "manager, PublishBatch(100)", peer: "Go channels", s: sb, p: ct})
		rep.add(&line{row: 1, name: fmt.Sprintf("latency p50, %d sub(s)", n), unit: "µs", better: lower, semprop: "manager, Publish", peer: "NATS in-process", s: sp50, p: np50})
		rep.add(&line{row: 1, name: fmt.Sprintf("latency p99, %d sub(s)", n), unit: "µs", better: lower, semprop: "manager, Publish", peer: "NATS in-process", s: sp99, p: np99})
		rep.add(&line{row: 1, name: fmt.Sprintf("latency p50, %d sub(s)", n), unit: "µs", better: lower, semprop: "manager, Publish", peer: "Go channels", s: sp50, p: cp50})
		rep.add(&line{row: 1, name: fmt.Sprintf("latency p99, %d sub(s)", n), unit: "µs", better: lower, semprop: "manager, Publish", peer: "Go channels", s: sp99, p: cp99})
	}
	return nil
}
