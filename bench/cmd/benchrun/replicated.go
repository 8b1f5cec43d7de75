package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/cluster"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ---- semprop: 3 nodes, Raft over TCP on loopback ----

type snode struct {
	j   *journal.Journal
	m   *propagate.Manager
	n   *cluster.Node
	srv *http.Server
	url string
}

type scluster struct{ nodes []*snode }

func (c *scluster) close() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = n.srv.Shutdown(ctx)
			cancel()
			_ = n.n.Close()
			_ = n.m.Close()
			_ = n.j.Close()
		})
	}
	wg.Wait()
}

func (c *scluster) leader() *snode {
	for _, n := range c.nodes {
		if n.n.IsLeader() {
			return n
		}
	}
	return nil
}

func startSempropNode(dir, id, join string, bootstrap bool) (*snode, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sn := &snode{url: "http://" + ln.Addr().String()}
	raftAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	// As `semprop run --node-id` opens it: the Raft log is the durable copy.
	sn.j, err = journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: journal.FsyncInterval, Logger: quiet})
	if err != nil {
		return nil, err
	}
	cfg := cluster.Config{ID: id, RaftAddr: raftAddr, APIURL: sn.url, Dir: filepath.Join(dir, "raft"), Journal: sn.j,
		Bootstrap: bootstrap, Join: join, Logger: quiet, RaftLogLevel: "off"}
	clock := event.NewClock(0)
	cfg.Clock = clock
	sn.m, err = propagate.New(propagate.Options{Journal: sn.j, Clock: clock, Logger: quiet, Source: "semprop://bench/" + id,
		NewSequencer: func(d propagate.Deliver) (propagate.Sequencer, error) {
			n, err := cluster.Open(cfg, d)
			sn.n = n
			return n, err
		}})
	if err != nil {
		sn.j.Close()
		ln.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/cluster", sn.n.Handler())
	mux.Handle("/v1/cluster/", sn.n.Handler())
	sn.srv = &http.Server{Handler: mux}
	go sn.srv.Serve(ln)
	return sn, nil
}

func startSempropCluster(ctx context.Context, dir string) (*scluster, error) {
	c := &scluster{}
	n0, err := startSempropNode(filepath.Join(dir, "n0"), "n0", "", true)
	if err != nil {
		return nil, err
	}
	c.nodes = append(c.nodes, n0)
	if err := waitFor(ctx, 20*time.Second, func() bool { ok, _ := n0.n.Ready(); return n0.n.IsLeader() && ok }); err != nil {
		c.close()
		return nil, fmt.Errorf("semprop: no leader: %w", err)
	}
	for i := 1; i < 3; i++ {
		n, err := startSempropNode(filepath.Join(dir, fmt.Sprintf("n%d", i)), fmt.Sprintf("n%d", i), n0.url, false)
		if err != nil {
			c.close()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	err = waitFor(ctx, 30*time.Second, func() bool {
		l := c.leader()
		if l == nil {
			return false
		}
		st := l.n.Status()
		ok := len(st.Members) == 3
		for _, m := range st.Members {
			ok = ok && m.APIURL != ""
		}
		return ok
	})
	if err != nil {
		c.close()
		return nil, fmt.Errorf("semprop: cluster did not reach 3 members: %w", err)
	}
	return c, nil
}

func waitFor(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// ---- JetStream: 3 servers, R3 file storage, sync always ----

type jscluster struct {
	srvs []*server.Server
	nc   *nats.Conn
	js   jetstream.JetStream
}

func (c *jscluster) close() {
	if c.nc != nil {
		c.nc.Close()
	}
	for _, s := range c.srvs {
		s.Shutdown()
	}
	for _, s := range c.srvs {
		s.WaitForShutdown()
	}
}

func startJSCluster(ctx context.Context, dir string) (*jscluster, error) {
	var routes []string
	for range 3 {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		routes = append(routes, a)
	}
	var rurls []*url.URL
	for _, r := range routes {
		rurls = append(rurls, &url.URL{Scheme: "nats", Host: r})
	}
	c := &jscluster{}
	for i := range 3 {
		_, port, _ := net.SplitHostPort(routes[i])
		var p int
		fmt.Sscan(port, &p)
		opts := &server.Options{ServerName: fmt.Sprintf("js%d", i), Port: -1, JetStream: true, SyncAlways: true,
			StoreDir: filepath.Join(dir, fmt.Sprintf("js%d", i)), Routes: rurls,
			Cluster: server.ClusterOpts{Name: "bench", Host: "127.0.0.1", Port: p}}
		opts.NoLog, opts.NoSigs, opts.Host = true, true, "127.0.0.1"
		s, err := server.NewServer(opts)
		if err != nil {
			c.close()
			return nil, err
		}
		go s.Start()
		c.srvs = append(c.srvs, s)
	}
	for _, s := range c.srvs {
		if !s.ReadyForConnections(20 * time.Second) {
			c.close()
			return nil, errors.New("jetstream: server not ready")
		}
	}
	// Create the stream (retried until the meta leader is elected), then
	// connect in-process to the stream's leader, as semprop publishes on
	// its leader.
	nc, err := nats.Connect(c.srvs[0].ClientURL())
	if err != nil {
		c.close()
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		c.close()
		return nil, err
	}
	var leader string
	err = waitFor(ctx, 60*time.Second, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		st, err := js.CreateOrUpdateStream(cctx, jetstream.StreamConfig{Name: "REP", Subjects: []string{"rep.>"}, Storage: jetstream.FileStorage, Replicas: 3})
		if err != nil {
			return false
		}
		info, err := st.Info(cctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				return false
			}
		}
		leader = info.Cluster.Leader
		return true
	})
	nc.Close()
	if err != nil {
		c.close()
		return nil, fmt.Errorf("jetstream: stream R3 not ready: %w", err)
	}
	for _, s := range c.srvs {
		if s.Name() == leader {
			if c.nc, err = nats.Connect("", nats.InProcessServer(s)); err != nil {
				c.close()
				return nil, err
			}
		}
	}
	if c.nc == nil {
		c.close()
		return nil, fmt.Errorf("jetstream: leader %q not found", leader)
	}
	if c.js, err = jetstream.New(c.nc); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func jsPublishBatch(ctx context.Context, js jetstream.JetStream, k int) error {
	futs := make([]jetstream.PubAckFuture, 0, k)
	for range k {
		f, err := js.PublishAsync("rep.x", payload100)
		if err != nil {
			return err
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func rowReplicated(ctx context.Context, c *cfg, rep *report) error {
	d := 4 * time.Second
	if c.quick {
		d = 700 * time.Millisecond
	}
	type shape struct {
		name             string
		workers, perCall int
	}
	shapes := []shape{{"64 publishers × 1 event", 64, 1}, {"16 publishers × 100 events in flight", 16, 100}, {"1 publisher × 1 event", 1, 1}}
	rep.note(3, "semprop: 3 nodes of internal/cluster (hashicorp/raft v1.8.0 with the leader writing its log while it replicates, counting itself in the quorum once its write is fsynced (third_party/raft), raft-wal log fsynced on every append, Raft over TCP on 127.0.0.1, cluster.Config defaults of the measured commit: up to 4096 events per log entry, MaxDelay 0 = no batching wait, an entry takes what queued while the previous one was appended) in this process; every node's journal is opened as a cluster node's is (fsync every 10 ms and before every Raft snapshot: the Raft log, fsynced on every append on a quorum, is the durable copy). Publishes go to the leader's propagate.Manager in-process; an ack means committed by a quorum (fsynced in raft-wal on a majority) and applied to the leader's journal (written; the journal's own fsync follows in the background, off the ack path: the Raft log is compacted only behind a snapshot whose journal position is fsynced, and a restarted node completes its journal from the log).")
	rep.note(3, "settings that differ: none in what an ack promises (stored and fsynced on a quorum on both sides); semprop's journals also fsync every record (in the background), on the same disk as the three raft-wal logs.")
	rep.note(3, gcNote)
	rep.note(3, "JetStream: 3 embedded nats-server v2.15.2 in this process, clustered over TCP routes on 127.0.0.1, stream R3 with file storage and sync always (SyncAlways: fsync before every ack); the client connects in-process (nats.InProcessServer) to the stream's leader. An ack (PubAck) means stored on a quorum.")
	rep.note(3, fmt.Sprintf("each shape runs %v per measurement with 100-byte payloads (semprop: 100 bytes of event data; its events also carry ID, HLC, type, subject). 64×1 = 64 goroutines each publishing one event and waiting for its ack (semprop Manager.Publish, jetstream.Publish); 16×100 = 16 goroutines each with 100 events in flight (semprop PublishBatch(100); JetStream 100 PublishAsync then wait for their 100 acks); latency is per call (per batch of 100 for that shape).", d))
	type res struct{ rate, p50, p99 []float64 }
	sres := make([]res, len(shapes))
	jres := make([]res, len(shapes))
	// measure runs every shape once on a running system.
	measureS := func(sc *scluster) error {
		m := sc.leader().m
		for i, sh := range shapes {
			evs := func() []*event.Event {
				evs := make([]*event.Event, sh.perCall)
				for k := range evs {
					evs[k] = &event.Event{Type: "bench.rep", Subject: "/data/file.txt", Data: payload100}
				}
				return evs
			}
			w := runWorkers(ctx, sh.workers, d, sh.perCall, func(ctx context.Context) error { return m.PublishBatch(ctx, evs()) })
			sres[i].rate, sres[i].p50, sres[i].p99 = append(sres[i].rate, w.rate), append(sres[i].p50, w.p50), append(sres[i].p99, w.p99)
			if err := errsOf(w); err != nil {
				return fmt.Errorf("semprop %s: %w", sh.name, err)
			}
		}
		return nil
	}
	measureJ := func(jc *jscluster) error {
		for i, sh := range shapes {
			var w workload
			if sh.perCall == 1 {
				w = runWorkers(ctx, sh.workers, d, 1, func(ctx context.Context) error { _, err := jc.js.Publish(ctx, "rep.x", payload100); return err })
			} else {
				w = runWorkers(ctx, sh.workers, d, sh.perCall, func(ctx context.Context) error { return jsPublishBatch(ctx, jc.js, sh.perCall) })
			}
			jres[i].rate, jres[i].p50, jres[i].p99 = append(jres[i].rate, w.rate), append(jres[i].p50, w.p50), append(jres[i].p99, w.p99)
			if err := errsOf(w); err != nil {
				return fmt.Errorf("jetstream %s: %w", sh.name, err)
			}
		}
		return nil
	}
	// Full runs start fresh clusters for every repetition, alternating which
	// side goes first; quick runs start each cluster once (startup dominates).
	clusters := c.reps
	repsPer := 1
	if c.quick {
		clusters, repsPer = 1, c.reps
		rep.note(3, "quick mode: each cluster is started once and measured repeatedly.")
	}
	for r := range clusters {
		order := []bool{true, false}
		if r%2 == 1 {
			order = []bool{false, true}
		}
		for _, semprop := range order {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			dir := filepath.Join(c.tmp, fmt.Sprintf("rep-%d-%v", r, semprop))
			restoreGC := serverGC(semprop)
			if semprop {
				sc, err := startSempropCluster(ctx, dir)
				if err != nil {
					return err
				}
				for range repsPer {
					if err := measureS(sc); err != nil {
						sc.close()
						return err
					}
				}
				sc.close()
			} else {
				jc, err := startJSCluster(ctx, dir)
				if err != nil {
					return err
				}
				for range repsPer {
					if err := measureJ(jc); err != nil {
						jc.close()
						return err
					}
				}
				jc.close()
			}
			restoreGC()
			os.RemoveAll(dir)
		}
	}
	for i, sh := range shapes {
		peer := "JetStream R3 file, sync always"
		rep.add(&line{row: 3, name: "acked events/s, " + sh.name, unit: "ev/s", better: higher, semprop: "3-node Raft cluster", peer: peer, s: sres[i].rate, p: jres[i].rate})
		rep.add(&line{row: 3, name: "ack latency p50, " + sh.name, unit: "µs", better: lower, semprop: "3-node Raft cluster", peer: peer, s: sres[i].p50, p: jres[i].p50})
		rep.add(&line{row: 3, name: "ack latency p99, " + sh.name, unit: "µs", better: lower, semprop: "3-node Raft cluster", peer: peer, s: sres[i].p99, p: jres[i].p99})
	}
	return nil
}
