package monitor

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/bridge"
	"github.com/semprop/semprop/internal/capture/fanotify"
	"github.com/semprop/semprop/internal/capture/fusefs"
	"github.com/semprop/semprop/internal/cep"
	"github.com/semprop/semprop/internal/cluster"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
	"github.com/semprop/semprop/internal/rules"
)

type fakeJournal struct {
	st  journal.Stats
	err error
}

func (f *fakeJournal) Stats() journal.Stats { return f.st }
func (f *fakeJournal) Err() error           { return f.err }

type fakeStats[T any] struct{ st T }

func (f *fakeStats[T]) Stats() T { return f.st }

type fakeRules struct {
	st    rules.Stats
	infos []rules.Info
}

func (f *fakeRules) Stats() rules.Stats  { return f.st }
func (f *fakeRules) Rules() []rules.Info { return f.infos }

type fakeCluster struct{ st cluster.Status }

func (f *fakeCluster) Status() cluster.Status { return f.st }

// testChecks returns Checks on a clock the test moves.
func testChecks(cfg HealthConfig) (*Checks, *time.Time) {
	now := t0
	c := NewChecks(cfg)
	c.env.now = func() time.Time { return now }
	return c, &now
}

func wantStatus(t *testing.T, what string, c Check, s Status, reason string) {
	t.Helper()
	if c.Status != s || !strings.Contains(c.Reason, reason) {
		t.Errorf("%s: %s %q, want %s with %q", what, c.Status, c.Reason, s, reason)
	}
}

func TestJournalCheck(t *testing.T) {
	c, now := testChecks(HealthConfig{})
	j := &fakeJournal{}
	chk := c.Journal(j)
	wantStatus(t, "idle", chk(), StatusOK, "")
	j.st.FsyncP99 = 200 * time.Millisecond
	wantStatus(t, "slow fsync", chk(), StatusDegraded, "fsync p99")
	j.st.FsyncP99 = 3 * time.Second
	wantStatus(t, "very slow fsync", chk(), StatusFailing, "fsync p99")
	j.st.FsyncP99 = 0
	j.err = fmt.Errorf("%w: disk", journal.ErrNoSpace)
	wantStatus(t, "no space", chk(), StatusFailing, "disk is full")
	j.err = errors.New("input/output error")
	wantStatus(t, "io error", chk(), StatusFailing, "write error")
	j.err = nil
	j.st.BackpressureWaits = 5
	wantStatus(t, "backpressure", chk(), StatusDegraded, "waited")
	*now = now.Add(6 * time.Minute)
	wantStatus(t, "backpressure out of the window", chk(), StatusOK, "")
}

func TestDiskCheck(t *testing.T) {
	dir := t.TempDir()
	c, _ := testChecks(HealthConfig{})
	chk := c.Disk(dir)()
	if chk.Measurement["total_bytes"] <= 0 {
		t.Fatalf("disk check measured %v", chk.Measurement)
	}
	c, _ = testChecks(HealthConfig{DiskFreeDegraded: 0.999999, DiskFreeFailing: 0.000001})
	wantStatus(t, "almost all must be free", c.Disk(dir)(), StatusDegraded, "left under the data directory")
	c, _ = testChecks(HealthConfig{DiskFreeDegraded: 1, DiskFreeFailing: 1})
	wantStatus(t, "all must be free", c.Disk(dir)(), StatusFailing, "left under the data directory")
	wantStatus(t, "missing dir", c.Disk(dir+"/nosuch")(), StatusFailing, "cannot stat")
}

func TestSubscriptionsCheck(t *testing.T) {
	c, now := testChecks(HealthConfig{})
	m := &fakeStats[propagate.Stats]{}
	chk := c.Subscriptions(m)
	m.st.Subscriptions = []propagate.SubscriptionStats{{Name: "ui", Depth: 1, Capacity: 100}}
	m.st.Consumers = []propagate.ConsumerInfo{{Name: "idx", Lag: 10}}
	wantStatus(t, "healthy", chk(), StatusOK, "")
	m.st.Subscriptions[0].Depth = 90
	wantStatus(t, "queue full", chk(), StatusDegraded, "ui's queue is 90% full")
	m.st.Subscriptions[0].Depth = 0
	m.st.Subscriptions[0].Dropped = 3
	wantStatus(t, "drops", chk(), StatusDegraded, "dropped 3 events")
	*now = now.Add(10 * time.Minute)
	wantStatus(t, "drops gone by", chk(), StatusOK, "")
	m.st.Consumers[0].Lag = 200000
	wantStatus(t, "lag", chk(), StatusDegraded, "consumer idx is 200000 events behind")
}

func TestCaptureCheck(t *testing.T) {
	c, now := testChecks(HealthConfig{})
	w := &fakeStats[fanotify.Stats]{}
	chk := c.Capture(w)
	wantStatus(t, "quiet", chk(), StatusOK, "")
	w.st.Overflows = 2
	wantStatus(t, "overflow", chk(), StatusDegraded, "overflowed 2 times")
	w.st.RescanErrors = 1
	wantStatus(t, "overflow and rescan errors", chk(), StatusFailing, "rescans failed")
	*now = now.Add(6 * time.Minute)
	wantStatus(t, "recovered", chk(), StatusOK, "")
	w.st.HandleErrors = 1
	wantStatus(t, "lost records", chk(), StatusDegraded, "lost or unreadable")
}

func TestBridgeCheck(t *testing.T) {
	c, _ := testChecks(HealthConfig{})
	b := &fakeStats[bridge.Stats]{}
	chk := c.Bridge(b)
	wantStatus(t, "quiet", chk(), StatusOK, "")
	b.st.Pending = 20000
	wantStatus(t, "pending", chk(), StatusDegraded, "wait for correlation")
	b.st.Lost = 1
	wantStatus(t, "lost", chk(), StatusFailing, "given up")
}

func TestFUSECheck(t *testing.T) {
	c, _ := testChecks(HealthConfig{})
	f := &fakeStats[fusefs.Stats]{}
	chk := c.FUSE(f)
	wantStatus(t, "quiet", chk(), StatusOK, "")
	f.st.InvalidationsDropped = 4
	wantStatus(t, "dropped", chk(), StatusDegraded, "invalidations dropped")
}

func TestRulesCheck(t *testing.T) {
	c, _ := testChecks(HealthConfig{})
	e := &fakeRules{infos: []rules.Info{{Name: "burst"}}}
	head := uint64(10)
	chk := c.Rules(e, func() uint64 { return head })
	e.st.Cursor = 10
	wantStatus(t, "caught up", chk(), StatusOK, "")
	head = 500000
	wantStatus(t, "behind", chk(), StatusDegraded, "behind")
	head = 10
	e.infos[0].Counters = cep.Counters{Throttled: 7}
	wantStatus(t, "throttled", chk(), StatusDegraded, "rules burst")
}

func TestActionsCheck(t *testing.T) {
	c, _ := testChecks(HealthConfig{})
	x := &fakeStats[action.Stats]{}
	chk := c.Actions(x)
	x.st.Done = 100
	chk() // the first reading is the baseline
	x.st.Done = 200
	wantStatus(t, "all done", chk(), StatusOK, "")
	x.st.Failed = 10
	wantStatus(t, "some failed", chk(), StatusDegraded, "failed")
	x.st.Failed = 300
	wantStatus(t, "most failed", chk(), StatusFailing, "failed")
}

func TestHTTPCheck(t *testing.T) {
	c, _ := testChecks(HealthConfig{})
	reg := prometheus.NewRegistry()
	req := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "semprop_http_requests_total", Help: "h"}, []string{"route", "method", "code"})
	reg.MustRegister(req)
	chk := c.HTTP(reg)
	chk()
	req.WithLabelValues("GET /v1/events", "GET", "200").Add(100)
	req.WithLabelValues("POST /v1/events", "POST", "503").Add(50) // not ready: not an error here
	wantStatus(t, "fine", chk(), StatusOK, "")
	req.WithLabelValues("GET /v1/events", "GET", "500").Add(10)
	wantStatus(t, "errors", chk(), StatusDegraded, "5xx")
	req.WithLabelValues("GET /v1/events", "GET", "500").Add(1000)
	wantStatus(t, "mostly errors", chk(), StatusFailing, "5xx")
}

func TestClusterCheck(t *testing.T) {
	c, _ := testChecks(HealthConfig{})
	n := &fakeCluster{st: cluster.Status{Ready: true, Members: []cluster.MemberStatus{{Member: cluster.Member{ID: "n2"}, Lag: 3, OffsetNS: int64(time.Millisecond)}}}}
	chk := c.Cluster(n)
	wantStatus(t, "ready", chk(), StatusOK, "")
	n.st.Members[0].OffsetNS = -int64(time.Second)
	wantStatus(t, "clock", chk(), StatusDegraded, "n2's clock is 1s off")
	n.st.Members[0].OffsetNS = 0
	n.st.Members[0].Lag = 50000
	wantStatus(t, "lag", chk(), StatusDegraded, "n2 is 50000 entries behind")
	n.st.Ready, n.st.Reason = false, "no quorum"
	wantStatus(t, "not ready", chk(), StatusFailing, "no quorum")
}

func TestHealthRegistry(t *testing.T) {
	h := NewHealth()
	status := StatusOK
	h.Register("journal", "journal", func() Check { return Check{Status: status, Reason: "r"} })
	h.Register("capture:/srv", "capture", func() Check { return Check{Status: StatusFailing, Reason: "overflow"} })
	if got := h.Missing([]string{"journal", "capture", "cluster"}); !slices.Equal(got, []string{"cluster"}) {
		t.Errorf("Missing = %v, want [cluster]", got)
	}
	// A failing capture check does not make the daemon unready; a
	// failing journal does.
	if err := h.Ready(); err != nil {
		t.Errorf("Ready = %v, want nil (capture is not critical)", err)
	}
	status = StatusFailing
	if err := h.Ready(); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "journal: r") {
		t.Errorf("Ready = %v, want ErrNotReady naming the journal", err)
	}
	if got := Overall(h.Checks()); got != StatusFailing {
		t.Errorf("Overall = %v", got)
	}
	h.Unregister("capture:/srv")
	if got := h.Components(); !slices.Equal(got, []string{"journal"}) {
		t.Errorf("Components = %v", got)
	}
	var s Status
	if err := s.UnmarshalText([]byte("degraded")); err != nil || s != StatusDegraded {
		t.Errorf("UnmarshalText = %v, %v", s, err)
	}
	if err := s.UnmarshalText([]byte("meh")); err == nil {
		t.Error("UnmarshalText(meh) = nil")
	}
}

// TestWindowIncrease: readings often within a second still age out of
// the window, and the first reading stays the baseline.
func TestWindowIncrease(t *testing.T) {
	now := t0
	w := &window{span: time.Minute, now: func() time.Time { return now }}
	if got := w.increase(5); got != 0 {
		t.Errorf("first increase = %v, want 0", got)
	}
	if got := w.increase(7); got != 2 {
		t.Errorf("same instant: increase = %v, want 2", got)
	}
	v := 7.0
	for range 300 { // 150 s of readings every half second, rising by 1 each
		now = now.Add(500 * time.Millisecond)
		v++
		w.increase(v)
	}
	// Only about the last minute (120 readings) counts.
	if got := w.increase(v); got < 115 || got > 125 {
		t.Errorf("increase over the last minute = %v, want about 120", got)
	}
	if got := w.increase(1); got != 1 {
		t.Errorf("after a reset: increase = %v, want 1", got)
	}
}

// TestHealthCollectorWithHTTPCheck: the HTTP check gathers the registry
// that also holds the Health's collector; gathering must not recurse
// into the checks forever (or deadlock on the check's lock).
func TestHealthCollectorWithHTTPCheck(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewHealth()
	h.Register("http", "http", NewChecks(HealthConfig{}).HTTP(reg))
	reg.MustRegister(h.Collector())
	done := make(chan error, 1)
	go func() {
		_, err := reg.Gather()
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Gather = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Gather did not return within 5s: the health collector recursed into the HTTP check")
	}
	if cs := h.Checks(); len(cs) != 1 || cs[0].Status != StatusOK {
		t.Errorf("Checks = %+v", cs)
	}
}
