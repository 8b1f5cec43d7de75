package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

func TestThreeNodesBasic(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A publish on every node, leader and followers alike.
	var first []*event.Event
	for i := range 3 {
		ev := &event.Event{Type: "test.basic", Subject: "/x"}
		seq, err := c.node(i).m.Publish(ctx, ev)
		if err != nil {
			t.Fatalf("publish on n%d: %v", i, err)
		}
		if seq != uint64(i+1) {
			t.Errorf("publish on n%d: seq %d, want %d", i, seq, i+1)
		}
		first = append(first, ev)
	}
	l := c.startLoad(4, 20)
	l.h.mu.Lock()
	for _, ev := range first {
		l.h.attempted[ev.ID], l.h.acked[ev.ID] = true, ev.Seq
	}
	l.h.mu.Unlock()
	time.Sleep(time.Second)
	l.stop()
	if l.h.numAcked() == 0 {
		t.Fatalf("no acknowledged events under load: %v", l.h.errs)
	}
	c.check(l.h)
	st := c.node(0).n.Status()
	if len(st.Members) != 3 {
		t.Fatalf("status members = %d, want 3", len(st.Members))
	}
	for _, m := range st.Members {
		if m.Self {
			continue
		}
		if m.LastSeen.IsZero() {
			t.Errorf("member %s never probed", m.ID)
			continue
		}
		if e := time.Duration(m.ErrorNS); e > time.Millisecond || absDur(m.OffsetNS) > time.Millisecond {
			t.Errorf("member %s: offset %v ± %v, want within 1ms on loopback", m.ID, time.Duration(m.OffsetNS), e)
		}
	}
	_ = errors.Is
}
