package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// network cuts links between test nodes: every outgoing connection (Raft
// and HTTP) goes through dial, which refuses blocked pairs, and blocking a
// pair closes the connections already open between them.
type network struct {
	mu      sync.Mutex
	owner   map[string]string // listen address -> node ID
	blocked map[[2]string]bool
	conns   map[[2]string]map[net.Conn]bool
}

func newNetwork() *network {
	return &network{owner: map[string]string{}, blocked: map[[2]string]bool{}, conns: map[[2]string]map[net.Conn]bool{}}
}

func (nw *network) register(addr, id string) {
	nw.mu.Lock()
	nw.owner[addr] = id
	nw.mu.Unlock()
}

func (nw *network) dialer(from string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nw.mu.Lock()
		to := nw.owner[addr]
		pair := [2]string{from, to}
		if nw.blocked[pair] {
			nw.mu.Unlock()
			return nil, fmt.Errorf("test network: %s -> %s is cut", from, to)
		}
		nw.mu.Unlock()
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		nw.mu.Lock()
		defer nw.mu.Unlock()
		if nw.blocked[pair] {
			c.Close()
			return nil, fmt.Errorf("test network: %s -> %s is cut", from, to)
		}
		if nw.conns[pair] == nil {
			nw.conns[pair] = map[net.Conn]bool{}
		}
		tc := &netConn{Conn: c, nw: nw, pair: pair}
		nw.conns[pair][tc] = true
		return tc, nil
	}
}

type netConn struct {
	net.Conn
	nw   *network
	pair [2]string
	once sync.Once
}

func (c *netConn) Close() error {
	c.once.Do(func() {
		c.nw.mu.Lock()
		delete(c.nw.conns[c.pair], c)
		c.nw.mu.Unlock()
	})
	return c.Conn.Close()
}

// partition cuts every link between group a and group b (both directions).
func (nw *network) partition(a, b []string) {
	var toClose []net.Conn
	nw.mu.Lock()
	for _, x := range a {
		for _, y := range b {
			for _, p := range [][2]string{{x, y}, {y, x}} {
				nw.blocked[p] = true
				for c := range nw.conns[p] {
					toClose = append(toClose, c)
				}
			}
		}
	}
	nw.mu.Unlock()
	for _, c := range toClose {
		c.Close()
	}
}

func (nw *network) heal() {
	nw.mu.Lock()
	nw.blocked = map[[2]string]bool{}
	nw.mu.Unlock()
}

// tnode is one in-process node: journal, manager, cluster node, HTTP server.
type tnode struct {
	id   string
	dir  string
	j    *journal.Journal
	m    *propagate.Manager
	n    *Node
	srv  *http.Server
	ln   net.Listener
	url  string
	addr string // raft address, kept across restarts
}

type tcluster struct {
	t     testing.TB
	nw    *network
	cfg   func(*Config)
	dedup propagate.DedupOptions // idempotent ingest of every node's manager

	mu    sync.Mutex
	nodes []*tnode // nil while down
	dirs  []string
	addrs []string
	apis  []string
}

func testConfig(c *Config) {
	// Shorter than the defaults so that failover tests are quick, but not
	// so short that a loaded machine (CI runs packages in parallel, under
	// -race, with TLS on every connection) loses leaders by itself.
	c.HeartbeatTimeout = 700 * time.Millisecond
	c.ElectionTimeout = 700 * time.Millisecond
	c.LeaderLeaseTimeout = 350 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.PingInterval = 200 * time.Millisecond
	c.LeaderWait = 3 * time.Second
	c.ForwardTimeout = 5 * time.Second
	c.RaftLogLevel = "off"
	if v := os.Getenv("SEMPROP_RAFT_LOG"); v != "" {
		c.RaftLogLevel = v
	}
}

var (
	testCAOnce sync.Once
	testCA     *CA
	testCAErr  error
	credsMu    sync.Mutex
	credsByID  = map[string]*Credentials{}
)

// memberCreds returns node id's credentials, issued by the test cluster CA
// (one per test binary). Test nodes run with them unless a test's tweak
// removes them.
func memberCreds(t testing.TB, id string) *Credentials {
	t.Helper()
	testCAOnce.Do(func() { testCA, testCAErr = GenerateCA("semprop test cluster CA", 24*time.Hour) })
	if testCAErr != nil {
		t.Fatal(testCAErr)
	}
	credsMu.Lock()
	defer credsMu.Unlock()
	if c := credsByID[id]; c != nil {
		return c
	}
	c, err := testCA.Credentials(id)
	if err != nil {
		t.Fatal(err)
	}
	credsByID[id] = c
	return c
}

// testJournalFsync is the fsync policy of test journals: a cluster node's,
// as the daemon opens it (interval; the Raft log is the durable copy, and a
// snapshot fsyncs the journal first). Benchmarks vary it.
var testJournalFsync = journal.FsyncInterval

// testJournalInterval is the test journals' fsync interval (0: the
// journal's default).
var testJournalInterval time.Duration

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

func newCluster(t testing.TB, size int, tweak func(*Config)) *tcluster {
	t.Helper()
	return newClusterDedup(t, size, tweak, propagate.DedupOptions{})
}

// newClusterDedup is newCluster with idempotent ingest on every node.
func newClusterDedup(t testing.TB, size int, tweak func(*Config), dedup propagate.DedupOptions) *tcluster {
	t.Helper()
	c := &tcluster{t: t, nw: newNetwork(), cfg: tweak, dedup: dedup}
	base := t.TempDir()
	for i := range size {
		c.dirs = append(c.dirs, filepath.Join(base, fmt.Sprintf("n%d", i)))
		c.addrs = append(c.addrs, "")
		c.apis = append(c.apis, "")
		c.nodes = append(c.nodes, nil)
	}
	t.Cleanup(c.stopAll)
	c.start(0, true, "")
	c.waitLeader(10 * time.Second)
	for i := 1; i < size; i++ {
		c.start(i, false, c.nodes[0].url)
	}
	c.waitMembers(size, 20*time.Second)
	return c
}

func (c *tcluster) id(i int) string { return fmt.Sprintf("n%d", i) }

// start opens node i (fresh or restarted from its directory).
func (c *tcluster) start(i int, bootstrap bool, join string) *tnode {
	c.t.Helper()
	tn, err := c.tryStart(i, bootstrap, join)
	if err != nil {
		c.t.Fatalf("start %s: %v", c.id(i), err)
	}
	return tn
}

// tryStart is start returning the node's error.
func (c *tcluster) tryStart(i int, bootstrap bool, join string) (*tnode, error) {
	c.t.Helper()
	tn := &tnode{id: c.id(i), dir: c.dirs[i]}
	var err error
	apiAddr := c.apis[i]
	if apiAddr == "" {
		apiAddr = "127.0.0.1:0"
	}
	tn.ln, err = net.Listen("tcp", apiAddr)
	if err != nil {
		tn.ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			c.t.Fatal(err)
		}
	}
	c.apis[i] = tn.ln.Addr().String()
	tn.url = "http://" + tn.ln.Addr().String()
	c.nw.register(tn.ln.Addr().String(), tn.id)
	tn.j, err = journal.Open(journal.Options{Dir: filepath.Join(tn.dir, "journal"), Fsync: testJournalFsync, FsyncInterval: testJournalInterval, Logger: quietLog})
	if err != nil {
		c.t.Fatal(err)
	}
	raftAddr := c.addrs[i]
	if raftAddr == "" {
		raftAddr = freeAddr(c.t)
		c.addrs[i] = raftAddr
	}
	c.nw.register(raftAddr, tn.id)
	cfg := Config{
		ID: tn.id, RaftAddr: raftAddr, APIURL: tn.url, Dir: filepath.Join(tn.dir, "raft"), Journal: tn.j,
		Bootstrap: bootstrap, Join: join, Dial: c.nw.dialer(tn.id), Logger: quietLog,
		Credentials: memberCreds(c.t, tn.id),
	}
	testConfig(&cfg)
	if c.cfg != nil {
		c.cfg(&cfg)
	}
	if c.dedup.Window > 0 {
		// As the daemon does: decode committed events when the manager
		// wants them (a live subscriber, or idempotent ingest).
		cfg.DeliverWanted = func() bool { return tn.m == nil || tn.m.WantsCommitted() }
	}
	clock := event.NewClockFunc(cfg.MaxOffset, nowOr(cfg.Now))
	cfg.Clock = clock
	tn.m, err = propagate.New(propagate.Options{Journal: tn.j, Clock: clock, Logger: quietLog, Source: "semprop://test/" + tn.id, Dedup: c.dedup,
		NewSequencer: func(d propagate.Deliver) (propagate.Sequencer, error) {
			n, err := Open(cfg, d)
			tn.n = n
			return n, err
		}})
	if err != nil {
		tn.j.Close()
		tn.ln.Close()
		return nil, err
	}
	tn.addr = raftAddr
	mux := http.NewServeMux()
	mux.Handle("/v1/cluster", tn.n.Handler())
	mux.Handle("/v1/cluster/", tn.n.Handler())
	tn.srv = &http.Server{Handler: mux}
	go tn.srv.Serve(tn.ln)
	c.mu.Lock()
	c.nodes[i] = tn
	c.mu.Unlock()
	return tn, nil
}

func nowOr(f func() int64) func() int64 {
	if f != nil {
		return f
	}
	return func() int64 { return time.Now().UnixNano() }
}

var (
	addrMu    sync.Mutex
	addrsUsed = map[string]bool{}
)

// freeAddr returns a loopback address that was free and that no other call
// in this process returned (the kernel may hand a released port out again).
func freeAddr(t testing.TB) string {
	addrMu.Lock()
	defer addrMu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := ln.Addr().String()
		ln.Close()
		if !addrsUsed[a] {
			addrsUsed[a] = true
			return a
		}
	}
	t.Fatal("no fresh loopback port")
	return ""
}

// stop shuts node i down (like a crash of the process, minus torn writes).
func (c *tcluster) stop(i int) {
	c.mu.Lock()
	tn := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if tn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = tn.srv.Shutdown(ctx)
	cancel()
	_ = tn.srv.Close()
	_ = tn.n.Close()
	_ = tn.m.Close()
	_ = tn.j.Close()
}

func (c *tcluster) stopAll() {
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { c.stop(i) })
	}
	wg.Wait()
}

func (c *tcluster) node(i int) *tnode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

func (c *tcluster) live() []*tnode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*tnode
	for _, tn := range c.nodes {
		if tn != nil {
			out = append(out, tn)
		}
	}
	return out
}

// leader returns the index of the live leader, or -1.
func (c *tcluster) leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, tn := range c.nodes {
		if tn != nil && tn.n.IsLeader() {
			return i
		}
	}
	return -1
}

func (c *tcluster) waitLeader(d time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if i := c.leader(); i >= 0 {
			if ok, _ := c.node(i).n.Ready(); ok {
				return i
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no leader within %v", d)
	return -1
}

// waitMembers waits until the leader's configuration has n members, all
// with metadata.
func (c *tcluster) waitMembers(size int, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if i := c.leader(); i >= 0 {
			st := c.node(i).n.Status()
			ok := len(st.Members) == size
			for _, m := range st.Members {
				ok = ok && m.APIURL != ""
			}
			if ok {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("cluster did not reach %d members within %v", size, d)
}

// history records what the load generator published and what was acked.
type history struct {
	mu        sync.Mutex
	attempted map[event.ID]bool
	acked     map[event.ID]uint64 // ID -> acked seq
	errs      map[string]int
}

func newHistory() *history {
	return &history{attempted: map[event.ID]bool{}, acked: map[event.ID]uint64{}, errs: map[string]int{}}
}

func (h *history) numAcked() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.acked)
}

// load publishes batches from `workers` goroutines to random live nodes
// until stop is called. Errors are expected while nodes die; they are
// counted by kind.
type load struct {
	h    *history
	stop func()
	done chan struct{}
}

func (c *tcluster) startLoad(workers, batch int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{h: newHistory(), done: make(chan struct{})}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for ctx.Err() == nil {
				nodes := c.live()
				if len(nodes) == 0 {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				// Like a load balancer that follows /readyz: prefer ready nodes.
				tn := nodes[rng.IntN(len(nodes))]
				for range len(nodes) {
					if ok, _ := tn.n.Ready(); ok {
						break
					}
					tn = nodes[rng.IntN(len(nodes))]
				}
				evs := make([]*event.Event, batch)
				l.h.mu.Lock()
				for i := range evs {
					evs[i] = &event.Event{ID: event.NewID(), Type: "test.load", Subject: fmt.Sprintf("/w%d", w), Data: make([]byte, 40)}
					l.h.attempted[evs[i].ID] = true
				}
				l.h.mu.Unlock()
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				err := tn.m.PublishBatch(pctx, evs)
				pcancel()
				l.h.mu.Lock()
				if err == nil {
					for _, ev := range evs {
						l.h.acked[ev.ID] = ev.Seq
					}
				} else {
					l.h.errs[errKind(err)]++
				}
				l.h.mu.Unlock()
				if err != nil {
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	l.stop = func() { cancel(); wg.Wait(); close(l.done) }
	return l
}

func errKind(err error) string {
	switch {
	case errors.Is(err, ErrNoQuorum):
		return "no_quorum"
	case errors.Is(err, ErrClosed), errors.Is(err, propagate.ErrClosed):
		return "closed"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "timeout"
	}
	return err.Error()
}

// readJournal returns the IDs in j, in seq order, checking seqs are
// contiguous from 1.
func readJournal(t testing.TB, name string, j *journal.Journal) []event.ID {
	t.Helper()
	rd, err := j.Reader(1)
	if err != nil {
		t.Fatalf("%s: reader: %v", name, err)
	}
	defer rd.Close()
	var ids []event.ID
	want := uint64(1)
	for {
		seq, payload, ok, err := rd.TryNext()
		if err != nil {
			t.Fatalf("%s: read: %v", name, err)
		}
		if !ok {
			break
		}
		if seq != want {
			t.Fatalf("%s: seq %d after %d: not contiguous", name, seq, want-1)
		}
		var ev event.Event
		if err := ev.UnmarshalBinary(payload); err != nil {
			t.Fatalf("%s: seq %d: %v", name, seq, err)
		}
		if ev.Seq != seq {
			t.Fatalf("%s: record %d carries seq %d", name, seq, ev.Seq)
		}
		ids = append(ids, ev.ID)
		want++
	}
	return ids
}

// check waits until every live node holds the same committed prefix and
// verifies the history against it: every acknowledged event is present
// exactly once, at its acknowledged seq, on every node, in the same order,
// and every event present was really published.
func (c *tcluster) check(h *history) {
	t := c.t
	t.Helper()
	nodes := c.live()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A final write through the leader, then every node syncs past it.
	li := c.waitLeader(15 * time.Second)
	if err := c.node(li).n.Sync(ctx); err != nil {
		t.Fatalf("sync leader: %v", err)
	}
	target := c.node(li).n.AppliedIndex()
	for _, tn := range nodes {
		if err := tn.n.WaitApplied(ctx, target); err != nil {
			t.Fatalf("%s: wait applied %d: %v (status %+v)", tn.id, target, err, tn.n.Status())
		}
		if err := tn.j.WaitDurable(ctx, tn.j.LastSeq()); err != nil {
			t.Fatal(err)
		}
	}
	// Nodes may differ only in how far they have applied (an unacknowledged
	// write can still commit after the sync point); their common prefix must
	// agree and each must hold every acknowledged event.
	var ref []event.ID
	var refName string
	all := make(map[string][]event.ID)
	for _, tn := range nodes {
		ids := readJournal(t, tn.id, tn.j)
		all[tn.id] = ids
		if len(ids) > len(ref) {
			ref, refName = ids, tn.id
		}
	}
	var maxAcked uint64
	h.mu.Lock()
	for _, seq := range h.acked {
		maxAcked = max(maxAcked, seq)
	}
	h.mu.Unlock()
	for id, ids := range all {
		for i := range ids {
			if ref[i] != ids[i] {
				t.Fatalf("seq %d: %s has %v, %s has %v", i+1, refName, ref[i], id, ids[i])
			}
		}
		if uint64(len(ids)) < maxAcked {
			t.Fatalf("%s has %d events, but seq %d was acknowledged", id, len(ids), maxAcked)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	pos := make(map[event.ID]uint64, len(ref))
	for i, id := range ref {
		if _, dup := pos[id]; dup {
			t.Fatalf("event %v appears twice (seq %d and %d)", id, pos[id], i+1)
		}
		pos[id] = uint64(i + 1)
		if !h.attempted[id] {
			t.Fatalf("seq %d: event %v was never published", i+1, id)
		}
	}
	for id, seq := range h.acked {
		got, ok := pos[id]
		if !ok {
			t.Fatalf("acknowledged event %v (seq %d) is missing", id, seq)
		}
		if got != seq {
			t.Fatalf("acknowledged event %v: acked seq %d, journal seq %d", id, seq, got)
		}
	}
	t.Logf("checker: %d nodes agree on %d events; %d acknowledged, %d attempted; errors %v",
		len(nodes), len(ref), len(h.acked), len(h.attempted), h.errs)
}

var _ = os.Getenv
var _ atomic.Int64
var _ = httptest.NewServer
