package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

// waitFor polls cond every 20ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
	return 0
}

// waitAcked waits until the load has n more acknowledged events.
func waitAcked(t testing.TB, l *load, more int, d time.Duration) {
	t.Helper()
	base := l.h.numAcked()
	waitFor(t, d, fmt.Sprintf("%d more acknowledged events", more), func() bool { return l.h.numAcked() >= base+more })
}

func ids(c *tcluster, idx ...int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, c.id(i))
	}
	return out
}

func TestLeaderKilled(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d-nodes", size), func(t *testing.T) {
			c := newCluster(t, size, nil)
			l := c.startLoad(4, 10)
			defer func() {
				select {
				case <-l.done:
				default:
					l.stop()
				}
			}()
			waitAcked(t, l, 200, 20*time.Second)
			old := c.leader()
			c.stop(old)
			start := time.Now()
			nl := c.waitLeader(15 * time.Second)
			t.Logf("n%d killed; n%d leads after %v", old, nl, time.Since(start))
			waitAcked(t, l, 200, 20*time.Second)
			c.start(old, false, "")
			waitAcked(t, l, 200, 20*time.Second)
			l.stop()
			c.check(l.h)
		})
	}
}

// catchUp measures how long until every node in lagging holds the journal
// position the leader had when called.
func catchUp(t *testing.T, c *tcluster, lagging []int) time.Duration {
	t.Helper()
	li := c.waitLeader(15 * time.Second)
	target := c.node(li).j.LastSeq()
	return waitFor(t, 30*time.Second, "lagging nodes to catch up", func() bool {
		for _, i := range lagging {
			if c.node(i).j.DurableSeq() < target {
				return false
			}
		}
		return true
	})
}

func TestMinorityPartition(t *testing.T) {
	c := newCluster(t, 5, nil)
	l := c.startLoad(4, 10)
	defer func() {
		select {
		case <-l.done:
		default:
			l.stop()
		}
	}()
	waitAcked(t, l, 200, 20*time.Second)
	li := c.leader()
	var minority, majority []int
	for i := range 5 {
		if i != li && len(minority) < 2 {
			minority = append(minority, i)
		} else {
			majority = append(majority, i)
		}
	}
	c.nw.partition(ids(c, minority...), ids(c, majority...))
	for _, i := range minority {
		n := c.node(i).n
		d := waitFor(t, 10*time.Second, "minority node to know it has no quorum", func() bool { ok, _ := n.Ready(); return !ok })
		_, reason := n.Ready()
		t.Logf("n%d not ready after %v: %s", i, d, reason)
		if !strings.Contains(reason, "no quorum") {
			t.Errorf("n%d: reason %q, want it to mention no quorum", i, reason)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_, err := c.node(i).m.Publish(ctx, &event.Event{Type: "test.minority"})
		cancel()
		if !errors.Is(err, ErrNoQuorum) {
			t.Errorf("publish on minority n%d: err %v, want ErrNoQuorum", i, err)
		}
	}
	waitAcked(t, l, 300, 20*time.Second) // the majority keeps committing
	c.nw.heal()
	healed := time.Now()
	d := catchUp(t, c, minority)
	t.Logf("catch-up after the partition healed: %v (checked from heal: %v)", d, time.Since(healed))
	waitAcked(t, l, 100, 20*time.Second)
	l.stop()
	c.check(l.h)
}

func TestMajorityPartition(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d-nodes", size), func(t *testing.T) {
			c := newCluster(t, size, nil)
			l := c.startLoad(4, 10)
			defer func() {
				select {
				case <-l.done:
				default:
					l.stop()
				}
			}()
			waitAcked(t, l, 200, 20*time.Second)
			old := c.leader()
			// The old leader (and, with 5 nodes, one follower) end up in the
			// minority; the majority elects a new leader.
			minority := []int{old}
			var majority []int
			for i := range size {
				if i == old {
					continue
				}
				if size == 5 && len(minority) < 2 {
					minority = append(minority, i)
				} else {
					majority = append(majority, i)
				}
			}
			c.nw.partition(ids(c, minority...), ids(c, majority...))
			n := c.node(old).n
			d := waitFor(t, 10*time.Second, "old leader to step down", func() bool { ok, _ := n.Ready(); return !ok && !n.IsLeader() })
			t.Logf("old leader n%d stepped down after %v", old, d)
			waitFor(t, 15*time.Second, "a new leader in the majority", func() bool {
				for _, i := range majority {
					if c.node(i).n.IsLeader() {
						return true
					}
				}
				return false
			})
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			_, err := c.node(old).m.Publish(ctx, &event.Event{Type: "test.minority"})
			cancel()
			if !errors.Is(err, ErrNoQuorum) {
				t.Errorf("publish on old leader: err %v, want ErrNoQuorum", err)
			}
			waitAcked(t, l, 300, 20*time.Second)
			c.nw.heal()
			d = catchUp(t, c, minority)
			t.Logf("catch-up after the partition healed: %v", d)
			waitAcked(t, l, 100, 20*time.Second)
			l.stop()
			c.check(l.h)
		})
	}
}

func TestRollingRestart(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.startLoad(4, 10)
	defer func() {
		select {
		case <-l.done:
		default:
			l.stop()
		}
	}()
	waitAcked(t, l, 200, 20*time.Second)
	for i := range 3 {
		c.stop(i)
		c.waitLeader(15 * time.Second)
		waitAcked(t, l, 100, 20*time.Second)
		c.start(i, false, "")
		n := c.node(i).n
		waitFor(t, 15*time.Second, fmt.Sprintf("n%d ready after restart", i), func() bool { ok, _ := n.Ready(); return ok })
		waitAcked(t, l, 100, 20*time.Second)
	}
	l.stop()
	c.check(l.h)
}

func TestMembershipChange(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.addSlot()
	l := c.startLoad(4, 10)
	defer func() {
		select {
		case <-l.done:
		default:
			l.stop()
		}
	}()
	waitAcked(t, l, 200, 20*time.Second)
	// Join through a follower: it forwards the join to the leader.
	li := c.leader()
	via := (li + 1) % 3
	c.start(3, false, c.node(via).url)
	c.waitMembers(4, 20*time.Second)
	d := catchUp(t, c, []int{3})
	t.Logf("new member caught up in %v", d)
	waitAcked(t, l, 200, 20*time.Second)
	// Remove a follower (asked on the new member), then stop it.
	gone := (c.leader() + 1) % 3
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.node(3).n.Leave(ctx, c.id(gone)); err != nil {
		t.Fatalf("leave n%d: %v", gone, err)
	}
	c.stop(gone)
	c.waitMembers(3, 20*time.Second)
	waitAcked(t, l, 200, 20*time.Second)
	l.stop()
	c.check(l.h)
}

func TestSnapshotRestoreFetchesJournal(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 20
		cfg.TrailingLogs = 10
		cfg.SnapshotInterval = 100 * time.Millisecond
		cfg.MaxBatch = 16
		cfg.WALSegmentSize = 16 << 10
	})
	l := c.startLoad(4, 10)
	defer func() {
		select {
		case <-l.done:
		default:
			l.stop()
		}
	}()
	waitAcked(t, l, 100, 20*time.Second)
	lag := (c.leader() + 1) % 3
	c.stop(lag)
	waitAcked(t, l, 1500, 30*time.Second)
	// Make sure the log behind the lagging node is compacted away.
	for _, tn := range c.live() {
		if err := tn.n.Raft().Snapshot().Error(); err != nil {
			t.Logf("%s snapshot: %v", tn.id, err)
		}
	}
	waitAcked(t, l, 200, 20*time.Second)
	for _, tn := range c.live() {
		first, _ := tn.n.wal.FirstIndex()
		t.Logf("%s: raft log %d..%d", tn.id, first, tn.n.Raft().LastIndex())
	}
	c.start(lag, false, "")
	t.Logf("n%d restarted: journal at %d, raft log at %d, applied %d", lag, c.node(lag).j.LastSeq(), c.node(lag).n.Raft().LastIndex(), c.node(lag).n.AppliedIndex())
	d := catchUp(t, c, []int{lag})
	// The fetched records are durable before Restore returns and counts
	// the restore: wait for the count, not only for the journal.
	n := c.node(lag).n
	waitFor(t, 10*time.Second, fmt.Sprintf("n%d to count a snapshot restore", lag), func() bool { return n.Status().Restores > 0 })
	st := n.Status()
	t.Logf("n%d caught up in %v: %d snapshot restores, %d records fetched", lag, d, st.Restores, st.Fetched)
	if st.Fetched == 0 {
		t.Errorf("n%d: restored a snapshot without fetching records: want the snapshot path", lag)
	}
	l.stop()
	c.check(l.h)
}

func TestClockOffsetRefused(t *testing.T) {
	var skew atomic.Int64
	c := newCluster(t, 3, func(cfg *Config) {
		if cfg.ID == "n2" || cfg.ID == "n3" {
			cfg.Now = func() int64 { return time.Now().UnixNano() + skew.Load() }
		}
	})
	c.addSlot()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A node whose clock is 2s ahead cannot join.
	skew.Store(int64(2 * time.Second))
	tn := c.start(3, false, "")
	err := c.node(c.leader()).n.Join(ctx, Member{ID: "n3", RaftAddr: tn.addr, APIURL: tn.url})
	if !errors.Is(err, ErrClockOffset) {
		t.Fatalf("join with a 2s clock offset: err %v, want ErrClockOffset", err)
	}
	t.Logf("join refused: %v", err)
	// A member whose clock jumps is refused: it reports not ready and its
	// writes fail with a clock error, never committed.
	n2 := c.node(2).n
	waitFor(t, 10*time.Second, "n2 to see the 2s offset to its leader", func() bool {
		ok, reason := n2.Ready()
		return !ok && strings.Contains(reason, "clock")
	})
	_, reason := n2.Ready()
	t.Logf("n2: %s", reason)
	_, err = c.node(2).m.Publish(ctx, &event.Event{Type: "test.skew"})
	if !errors.Is(err, ErrClockOffset) {
		t.Errorf("publish on skewed n2: err %v, want ErrClockOffset", err)
	}
	skew.Store(0)
	waitFor(t, 10*time.Second, "n2 ready once its clock is back", func() bool { ok, _ := n2.Ready(); return ok })
}

func (c *tcluster) addSlot() {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := len(c.nodes)
	c.dirs = append(c.dirs, filepath.Join(filepath.Dir(c.dirs[0]), fmt.Sprintf("n%d", i)))
	c.addrs = append(c.addrs, "")
	c.apis = append(c.apis, "")
	c.nodes = append(c.nodes, nil)
}

// TestJournalLost: a node whose journal is gone (a disk replaced, or
// records lost to --fsync never) rebuilds it on restart from its snapshot
// plus records fetched from peers, and from the log after that.
func TestJournalLost(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 20
		cfg.TrailingLogs = 10
		cfg.SnapshotInterval = 100 * time.Millisecond
		cfg.MaxBatch = 16
		cfg.WALSegmentSize = 16 << 10
	})
	l := c.startLoad(4, 10)
	defer func() {
		select {
		case <-l.done:
		default:
			l.stop()
		}
	}()
	waitAcked(t, l, 1000, 30*time.Second)
	victim := (c.leader() + 1) % 3
	if err := c.node(victim).n.Raft().Snapshot().Error(); err != nil {
		t.Logf("snapshot: %v", err)
	}
	c.stop(victim)
	if err := os.RemoveAll(filepath.Join(c.dirs[victim], "journal")); err != nil {
		t.Fatal(err)
	}
	waitAcked(t, l, 300, 20*time.Second)
	c.start(victim, false, "")
	d := catchUp(t, c, []int{victim})
	st := c.node(victim).n.Status()
	t.Logf("n%d rebuilt its journal in %v: %d snapshot restores, %d records fetched", victim, d, st.Restores, st.Fetched)
	if st.Fetched == 0 {
		t.Errorf("n%d fetched no records", victim)
	}
	l.stop()
	c.check(l.h)
}
