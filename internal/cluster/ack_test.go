package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

// TestAckDoesNotWaitForJournalFsync checks that an acknowledgement waits
// for the quorum commit and the apply, not for the local journal's fsync:
// the Raft log already holds the entry durably on a quorum, and a journal
// that loses unsynced records completes them from the log on restart. With
// the journal fsync on the ack path, every acknowledged event would be
// durable in the journal when Sequence returns; without it, some are not
// yet (the fsync runs in the background), while every one is applied.
func TestAckDoesNotWaitForJournalFsync(t *testing.T) {
	c := newCluster(t, 1, nil)
	tn := c.node(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 300
	ahead := 0
	for i := range n {
		ev := &event.Event{Type: "test.ack", Subject: "/a"}
		seq, err := tn.m.Publish(ctx, ev)
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if got := tn.j.LastSeq(); got < seq {
			t.Fatalf("publish %d acknowledged seq %d before the journal held it (last seq %d)", i, seq, got)
		}
		if tn.j.DurableSeq() < seq {
			ahead++
		}
	}
	t.Logf("%d of %d acknowledgements came before the journal's fsync", ahead, n)
	if ahead == 0 {
		t.Fatalf("all %d acknowledgements waited for the journal's fsync; want the ack after commit and apply only", n)
	}
	// Everything acknowledged becomes durable in the background.
	if err := tn.j.WaitDurable(ctx, uint64(n)); err != nil {
		t.Fatal(err)
	}
}
