package cluster

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/propagate"
)

// copyN is a fresh copy of application event k: the same source and id
// every time, as a producer's retry sends it.
func copyN(k int) *event.Event {
	var id event.ID
	binary.BigEndian.PutUint64(id[8:], uint64(k)+1)
	return &event.Event{ID: id, Source: "app://retrying", Type: "app.order", Subject: fmt.Sprintf("/orders/%d", k)}
}

// TestLeaderDecidesCopies publishes every event at once through all three
// nodes (singly on one, in batches on the others, in different orders):
// each copy is answered with the one seq, and every node's journal holds
// each event once. Each node's own window cannot see copies in flight
// through the others; the leader does.
func TestLeaderDecidesCopies(t *testing.T) {
	c := newClusterDedup(t, 3, nil, propagate.DedupOptions{Window: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 210
	seqs := make([][3]uint64, n)
	order := func(node int) []int {
		ks := make([]int, n)
		for k := range ks {
			ks[k] = k
		}
		if node == 2 {
			slices.Reverse(ks)
		}
		return ks
	}
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		mu    sync.Mutex
		errs  []error
	)
	for node := range 3 {
		m := c.node(node).m
		batch := 1 + 6*min(node, 1) // 1 on n0, 7 elsewhere
		wg.Go(func() {
			<-start
			ks := order(node)
			for len(ks) > 0 {
				part := ks[:min(batch, len(ks))]
				ks = ks[len(part):]
				evs := make([]*event.Event, len(part))
				for i, k := range part {
					evs[i] = copyN(k)
				}
				// A copy inside the batch too, now and then.
				if len(part) > 1 && part[0]%3 == 0 {
					evs = append(evs, copyN(part[0]))
				}
				if err := m.PublishBatch(ctx, evs); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("n%d: %w", node, err))
					mu.Unlock()
					continue
				}
				for i, k := range part {
					seqs[k][node] = evs[i].Seq
				}
				if len(evs) > len(part) && evs[len(part)].Seq != evs[0].Seq {
					mu.Lock()
					errs = append(errs, fmt.Errorf("n%d: the copy inside a batch got seq %d, its first %d", node, evs[len(part)].Seq, evs[0].Seq))
					mu.Unlock()
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	stored := make(map[uint64]int)
	for k, s := range seqs {
		if s[0] == 0 || s[0] != s[1] || s[1] != s[2] {
			t.Errorf("event %d: seqs %v through n0, n1, n2; want one seq", k, s)
		}
		stored[s[0]]++
	}
	// Every journal, once caught up, holds each event once.
	li := c.waitLeader(15 * time.Second)
	if err := c.node(li).n.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	target := c.node(li).n.AppliedIndex()
	for i := range 3 {
		tn := c.node(i)
		if err := tn.n.WaitApplied(ctx, target); err != nil {
			t.Fatal(err)
		}
		ids := readJournal(t, tn.id, tn.j)
		count := make(map[event.ID]int)
		for _, id := range ids {
			count[id]++
		}
		twice := 0
		for _, c := range count {
			if c > 1 {
				twice++
			}
		}
		if len(count) != n || twice != 0 || len(ids) != n {
			t.Errorf("%s: journal holds %d events, %d distinct, %d stored more than once; want %d once each", tn.id, len(ids), len(count), twice, n)
		}
	}
	var dupes uint64
	for i := range 3 {
		dupes += c.node(i).m.Stats().Duplicates
	}
	t.Logf("%d events published %d times (plus copies in batches); %d answered from a window", n, 3*n, dupes)
	if dupes == 0 {
		t.Error("no publish was answered from a window")
	}
}

// TestCopiesAfterFailover publishes events through the leader, stops it,
// and publishes copies through the survivors: the new leader remembers
// what the old one committed (its window learns every committed event,
// and it applies the old terms' entries before it judges).
func TestCopiesAfterFailover(t *testing.T) {
	c := newClusterDedup(t, 3, nil, propagate.DedupOptions{Window: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	li := c.waitLeader(15 * time.Second)
	const n = 50
	first := make([]uint64, n)
	for k := range n {
		ev := copyN(k)
		if _, err := c.node(li).m.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
		first[k] = ev.Seq
	}
	c.stop(li)
	next := c.waitLeader(15 * time.Second)
	other := 3 - li - next
	for k := range n {
		for _, node := range []int{next, other} {
			ev := copyN(k)
			if _, err := c.node(node).m.Publish(ctx, ev); err != nil {
				t.Fatalf("copy %d through n%d: %v", k, node, err)
			}
			if ev.Seq != first[k] {
				t.Errorf("copy %d through n%d: seq %d, want the first's %d", k, node, ev.Seq, first[k])
			}
		}
	}
	fresh := copyN(n)
	if _, err := c.node(other).m.Publish(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if want := first[n-1] + 1; fresh.Seq != want {
		t.Errorf("a new event after the copies got seq %d, want %d (nothing stored in between)", fresh.Seq, want)
	}
}
