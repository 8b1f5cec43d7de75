package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/semprop/semprop/event"
)

// TestLeaderWritesWhileReplicating holds the leader's own Raft log writes
// back. Its followers still get the entry and commit it (a majority holds
// it durably), so the publish is acknowledged before the leader's write
// ends; with one follower stopped as well, no majority holds the entry
// durably and the publish waits for the leader's write.
func TestLeaderWritesWhileReplicating(t *testing.T) {
	c, li := newHeldCluster(t)
	leader := c.node(li)
	release := newHoldGate(t, leader.n.wal).release

	select {
	case err := <-publishAsync(leader):
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a publish waited for the leader's own log write: replication did not run alongside it")
	}

	// One follower down: the leader and the other follower are the only
	// majority, and the leader's copy is not durable yet.
	for i := range 3 {
		if i != li {
			c.stop(i)
			break
		}
	}
	expectHeldUntil(t, publishAsync(leader), release, "one durable copy out of three", "the leader's write")
}

// newHeldCluster starts a 3-node cluster for tests that hold Raft log
// writes back (no election because a loaded machine stalled a heartbeat),
// with one publish made so that connections are up, and returns it and
// its leader.
func newHeldCluster(t *testing.T) (*tcluster, int) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 3*time.Second, 3*time.Second, time.Second
	})
	li := c.waitLeader(10 * time.Second)
	if err := <-publishAsync(c.node(li)); err != nil {
		t.Fatal(err)
	}
	return c, li
}

// publishAsync publishes one event on n and reports the result.
func publishAsync(n *tnode) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := n.m.Publish(ctx, &event.Event{Type: "app.test", Subject: "/x"})
		done <- err
	}()
	return done
}

// expectHeldUntil checks that the publish behind done is not acknowledged
// while what release ends is held (with only what), and is once it is
// released (after what frees it).
func expectHeldUntil(t *testing.T, done <-chan error, release func(), with, after string) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("acknowledged with %s (err %v)", with, err)
	case <-time.After(500 * time.Millisecond):
	}
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the publish did not complete after %s did", after)
	}
}

// TestAsyncLogOrder checks the store on its own: entries handed over are
// readable before they are durable, groups are reported durable in order
// (several with one append), and a truncation waits for the writes before
// it.
func TestAsyncLogOrder(t *testing.T) {
	meta := &metadb.BoltMetaDB{}
	w, err := openWAL(t.TempDir(), hclog.NewNullLogger(), meta, 0)
	if err != nil {
		t.Fatal(err)
	}
	l := newAsyncLog(w)
	defer meta.Close()
	defer l.Close()
	held := make(chan struct{})
	var appends atomic.Int32
	gate := func() { <-held; appends.Add(1) }
	l.gate.Store(&gate)

	var (
		mu    sync.Mutex
		order []uint64
	)
	for g := range 4 {
		logs := make([]*raft.Log, 3)
		for k := range logs {
			i := uint64(g*3 + k + 1)
			logs[k] = &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}}
		}
		l.StoreLogsAsync(logs, func(err error) {
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			order = append(order, logs[len(logs)-1].Index)
			mu.Unlock()
		})
	}
	if last, err := l.LastIndex(); err != nil || last != 12 {
		t.Fatalf("last index %d, %v: want 12 before anything is durable", last, err)
	}
	var got raft.Log
	if err := l.GetLog(7, &got); err != nil || got.Data[0] != 7 {
		t.Fatalf("pending entry 7: %v %v", got.Data, err)
	}
	deleted := make(chan error, 1)
	go func() { deleted <- l.DeleteRange(10, 12) }()
	select {
	case err := <-deleted:
		t.Fatalf("a truncation ran before the writes made before it (%v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(held)
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(order) != 4 || order[0] != 3 || order[1] != 6 || order[2] != 9 || order[3] != 12 {
		t.Errorf("durable in order %v, want [3 6 9 12]", order)
	}
	mu.Unlock()
	if n := appends.Load(); n > 2 {
		t.Errorf("%d appends for 4 groups handed over while the first waited: want them shared", n)
	}
	if last, err := l.LastIndex(); err != nil || last != 9 {
		t.Errorf("last index after truncating 10-12: %d, %v", last, err)
	}
	if err := l.GetLog(9, &got); err != nil || got.Data[0] != 9 {
		t.Errorf("durable entry 9: %v %v", got.Data, err)
	}
}

// TestAsyncLogBarrier: StoreLogsAsync with no entries is done once the
// entries handed over before it are durable, also when it comes while the
// writer is already writing them, and at once when nothing is pending.
func TestAsyncLogBarrier(t *testing.T) {
	meta := &metadb.BoltMetaDB{}
	w, err := openWAL(t.TempDir(), hclog.NewNullLogger(), meta, 0)
	if err != nil {
		t.Fatal(err)
	}
	l := newAsyncLog(w)
	defer meta.Close()
	defer l.Close()
	writing, held := make(chan struct{}, 1), make(chan struct{})
	gate := func() { writing <- struct{}{}; <-held }
	l.gate.Store(&gate)

	barrier := func() <-chan error {
		done := make(chan error, 1)
		l.StoreLogsAsync(nil, func(err error) { done <- err })
		return done
	}
	l.StoreLogsAsync([]*raft.Log{{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte{1}}}, func(error) {})
	<-writing // the writer has taken entry 1
	b := barrier()
	select {
	case err := <-b:
		t.Fatalf("barrier done (%v) before the entry before it was durable", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(held)
	select {
	case err := <-b:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("barrier not done after the entry before it was written")
	}
	if idx, err := l.WAL.LastIndex(); err != nil || idx != 1 {
		t.Fatalf("durable last index %d, %v", idx, err)
	}
	select {
	case err := <-barrier():
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("barrier with nothing pending not done at once")
	}
}

// TestConcurrentPublishesShareEntries: 64 publishers of one event each
// share log entries, because a new entry waits while Config.MaxInflight
// are on their way. Without that bound every publish became its own entry
// once the leader no longer waited for its own fsync (1.2 events an entry).
func TestConcurrentPublishesShareEntries(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.node(c.waitLeader(10 * time.Second))
	const workers, each = 64, 20
	entries := leader.n.r.AppliedIndex()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range each {
				if _, err := leader.m.Publish(context.Background(), &event.Event{Type: "app.test", Subject: "/x"}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	entries = leader.n.r.AppliedIndex() - entries
	per := float64(workers*each) / float64(entries)
	t.Logf("%d events in %d entries: %.1f an entry", workers*each, entries, per)
	if per < 4 {
		t.Errorf("%.1f events an entry, want concurrent publishes to share entries (≥ 4)", per)
	}
}

// TestSnapshotSyncsJournal: a node's journal fsyncs only every interval
// (here: never within the test), so persisting a Raft snapshot, behind
// which the log may be compacted, must fsync it first.
func TestSnapshotSyncsJournal(t *testing.T) {
	testJournalInterval = time.Hour
	t.Cleanup(func() { testJournalInterval = 0 })
	c := newCluster(t, 3, nil)
	leader := c.node(c.waitLeader(10 * time.Second))
	for range 20 {
		if _, err := leader.m.Publish(context.Background(), &event.Event{Type: "app.test", Subject: "/x"}); err != nil {
			t.Fatal(err)
		}
	}
	before := leader.j.Stats().Fsyncs
	if err := leader.n.r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if after := leader.j.Stats().Fsyncs; after <= before {
		t.Errorf("journal fsyncs %d before a snapshot, %d after: the snapshot's position was not fsynced", before, after)
	}
}

// holdGate holds a node's Raft log writes back until release; appends
// counts the writes that went through it.
type holdGate struct {
	mu      sync.Mutex
	held    chan struct{}
	hold    bool
	appends atomic.Int64
}

func newHoldGate(t *testing.T, l *asyncLog) *holdGate {
	g := &holdGate{held: make(chan struct{}), hold: true}
	gate := func() {
		g.mu.Lock()
		h := g.hold
		g.mu.Unlock()
		if h {
			<-g.held
		}
		g.appends.Add(1)
	}
	l.gate.Store(&gate)
	t.Cleanup(g.release)
	return g
}

func (g *holdGate) release() {
	g.mu.Lock()
	if g.hold {
		g.hold = false
		close(g.held)
	}
	g.mu.Unlock()
}

// TestFollowerAnswersWhenDurable: a follower writes the entries it gets in
// the background, but answers the leader only once they are durable. With
// both followers' writes held, the leader's copy is the only durable one
// and no publish may be acknowledged; releasing one follower acknowledges
// it.
func TestFollowerAnswersWhenDurable(t *testing.T) {
	c, li := newHeldCluster(t)
	var gates []*holdGate
	for i := range 3 {
		if i != li {
			gates = append(gates, newHoldGate(t, c.node(i).n.wal))
		}
	}
	expectHeldUntil(t, publishAsync(c.node(li)), gates[0].release, "no follower's copy durable", "a follower's write")
}

// TestFollowerSharesFsyncs: while a follower's Raft log write is held, the
// leader goes on replicating (the other follower makes the quorum) and the
// held follower takes the new entries in; once released, it writes them
// all in a few appends (fsyncs) instead of one per AppendEntries.
func TestFollowerSharesFsyncs(t *testing.T) {
	c, li := newHeldCluster(t)
	leader := c.node(li)
	fi := (li + 1) % 3
	follower := c.node(fi)
	g := newHoldGate(t, follower.n.wal)
	const n = 30
	for range n {
		// One at a time: each is its own entry and AppendEntries.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := leader.m.Publish(ctx, &event.Event{Type: "app.test", Subject: "/x"})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	want := leader.n.r.LastIndex()
	// The held follower has every entry in memory already.
	deadline := time.Now().Add(10 * time.Second)
	for follower.n.r.LastIndex() < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := follower.n.r.LastIndex(); got < want {
		t.Fatalf("held follower's last index %d, leader's %d: it stopped taking entries in while its write was held", got, want)
	}
	g.release()
	deadline = time.Now().Add(10 * time.Second)
	for {
		idx, err := follower.n.wal.WAL.LastIndex()
		if err != nil {
			t.Fatal(err)
		}
		if idx >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("follower's durable log reached %d, want %d", idx, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if a := g.appends.Load(); a > 5 {
		t.Errorf("%d appends for %d entries that arrived while one was held: want them to share fsyncs", a, n)
	} else {
		t.Logf("%d appends for %d entries", a, n)
	}
}
