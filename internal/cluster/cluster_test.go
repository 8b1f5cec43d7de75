package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

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
		t.Logf("n0 -> %s: offset %v ± %v (rtt %v)", m.ID, time.Duration(m.OffsetNS), time.Duration(m.ErrorNS), time.Duration(m.RTTNS))
		// One machine, one clock: the estimate's interval must hold 0,
		// and its error is at most half the round trip (more than 1ms
		// only when the round trip was slow: a loaded machine).
		e, rtt := time.Duration(m.ErrorNS), time.Duration(m.RTTNS)
		if absDur(m.OffsetNS) > e+50*time.Microsecond || e > rtt/2+50*time.Microsecond || (rtt <= 2*time.Millisecond && e > time.Millisecond) {
			t.Errorf("member %s: offset %v ± %v (rtt %v): want an interval that holds 0, within half the round trip (1ms on an idle loopback)",
				m.ID, time.Duration(m.OffsetNS), e, rtt)
		}
	}
}

func TestMetrics(t *testing.T) {
	c := newCluster(t, 3, nil)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c.node(0).n.Collector()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // a few probes
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, mf := range mfs {
		got[mf.GetName()] = len(mf.GetMetric())
		if mf.GetName() == "semprop_cluster_ready" {
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v != 1 {
				t.Errorf("semprop_cluster_ready = %v, want 1", v)
			}
		}
	}
	want := map[string]int{
		"semprop_cluster_ready": 1, "semprop_cluster_leader": 1, "semprop_cluster_commit_index": 1,
		"semprop_cluster_applied_index": 1, "semprop_cluster_snapshot_restores_total": 1,
		"semprop_cluster_records_fetched_total": 1, "semprop_cluster_refused_connections_total": 1, "semprop_cluster_peer_clock_offset_seconds": 2,
		"semprop_cluster_peer_clock_error_seconds": 2, "semprop_cluster_peer_lag_entries": 2, "semprop_cluster_peer_refused": 2,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metric families (-want +got):\n%s", diff)
	}
}
