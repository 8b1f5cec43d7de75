package monitor

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/bridge"
	"github.com/semprop/semprop/internal/capture/fanotify"
	"github.com/semprop/semprop/internal/capture/fusefs"
	"github.com/semprop/semprop/internal/cluster"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
	"github.com/semprop/semprop/internal/rules"
)

// HealthConfig holds the thresholds of the health checks. Zero fields
// take the defaults written next to them.
type HealthConfig struct {
	// Window is the span over which checks count new overflows, drops,
	// errors and failures (default 5m).
	Window Duration `yaml:"window,omitempty" json:"window,omitempty"`
	// FsyncDegraded and FsyncFailing: the journal's fsync p99 (default
	// 100ms and 2s).
	FsyncDegraded Duration `yaml:"fsync_degraded,omitempty" json:"fsync_degraded,omitempty"`
	FsyncFailing  Duration `yaml:"fsync_failing,omitempty" json:"fsync_failing,omitempty"`
	// DiskFreeDegraded and DiskFreeFailing: the fraction of space (and of
	// inodes) left under the data directory (default 0.10 and 0.02).
	DiskFreeDegraded float64 `yaml:"disk_free_degraded,omitempty" json:"disk_free_degraded,omitempty"`
	DiskFreeFailing  float64 `yaml:"disk_free_failing,omitempty" json:"disk_free_failing,omitempty"`
	// QueueDegraded: a live subscription's queue this full (default 0.8).
	QueueDegraded float64 `yaml:"queue_degraded,omitempty" json:"queue_degraded,omitempty"`
	// LagDegraded: a durable consumer, the rule engine or the action
	// executor this many events behind the journal (default 100000).
	LagDegraded uint64 `yaml:"lag_degraded,omitempty" json:"lag_degraded,omitempty"`
	// PendingDegraded: bridge ops waiting for a partner or the correlator
	// (default 10000).
	PendingDegraded int `yaml:"pending_degraded,omitempty" json:"pending_degraded,omitempty"`
	// ErrorRateDegraded and ErrorRateFailing: the share of HTTP answers
	// that are 5xx, and of actions that fail, within Window (default 0.05
	// and 0.5).
	ErrorRateDegraded float64 `yaml:"error_rate_degraded,omitempty" json:"error_rate_degraded,omitempty"`
	ErrorRateFailing  float64 `yaml:"error_rate_failing,omitempty" json:"error_rate_failing,omitempty"`
	// ReplicationLagDegraded: a cluster member this many log entries
	// behind the commit index (default 10000); ClockOffsetDegraded: a
	// peer's clock this far off (default 500ms).
	ReplicationLagDegraded uint64   `yaml:"replication_lag_degraded,omitempty" json:"replication_lag_degraded,omitempty"`
	ClockOffsetDegraded    Duration `yaml:"clock_offset_degraded,omitempty" json:"clock_offset_degraded,omitempty"`
}

// WithDefaults returns c with every zero field set to its default.
func (c HealthConfig) WithDefaults() HealthConfig {
	def := func(v *Duration, d time.Duration) {
		if *v == 0 {
			*v = Duration(d)
		}
	}
	deff := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Window, 5*time.Minute)
	def(&c.FsyncDegraded, 100*time.Millisecond)
	def(&c.FsyncFailing, 2*time.Second)
	deff(&c.DiskFreeDegraded, 0.10)
	deff(&c.DiskFreeFailing, 0.02)
	deff(&c.QueueDegraded, 0.8)
	deff(&c.ErrorRateDegraded, 0.05)
	deff(&c.ErrorRateFailing, 0.5)
	if c.LagDegraded == 0 {
		c.LagDegraded = 100000
	}
	if c.PendingDegraded == 0 {
		c.PendingDegraded = 10000
	}
	if c.ReplicationLagDegraded == 0 {
		c.ReplicationLagDegraded = 10000
	}
	def(&c.ClockOffsetDegraded, 500*time.Millisecond)
	return c
}

// Validate checks the thresholds.
func (c HealthConfig) Validate() error {
	d := c.WithDefaults()
	for _, f := range []float64{d.DiskFreeDegraded, d.DiskFreeFailing, d.QueueDegraded, d.ErrorRateDegraded, d.ErrorRateFailing} {
		if f < 0 || f > 1 {
			return fmt.Errorf("%w: health: fractions are between 0 and 1", ErrConfig)
		}
	}
	if d.DiskFreeFailing > d.DiskFreeDegraded || d.ErrorRateFailing < d.ErrorRateDegraded || d.FsyncFailing < d.FsyncDegraded {
		return fmt.Errorf("%w: health: a failing threshold is milder than its degraded one", ErrConfig)
	}
	if d.Window < 0 {
		return fmt.Errorf("%w: health: negative window", ErrConfig)
	}
	return nil
}

// window remembers a counter's recent values to tell how much it rose in
// the last span. Not safe for concurrent use (Health serializes a check).
type window struct {
	span time.Duration
	now  func() time.Time
	ts   []time.Time
	vs   []float64
}

// increase records v now and returns how much it rose within the span
// (from the oldest value recorded within it; a drop counts as a reset).
func (w *window) increase(v float64) float64 {
	now := w.now()
	// Readings less than a second apart replace the newest one, never the
	// first (the baseline the increase is measured from).
	if n := len(w.ts); n < 2 || now.Sub(w.ts[n-1]) >= time.Second {
		w.ts, w.vs = append(w.ts, now), append(w.vs, v)
	} else {
		w.vs[n-1] = v
	}
	i := 0
	for i < len(w.ts)-1 && now.Sub(w.ts[i+1]) >= w.span {
		i++
	}
	w.ts, w.vs = w.ts[i:], w.vs[i:]
	d := v - w.vs[0]
	if d < 0 {
		d = v
	}
	return d
}

// checkEnv gives check constructors the clock and thresholds.
type checkEnv struct {
	cfg HealthConfig
	now func() time.Time
}

func (e checkEnv) window() *window {
	return &window{span: time.Duration(e.cfg.Window), now: e.now}
}

// Checks builds the check functions of the daemon's components with
// thresholds; it is the one-line-per-component wiring of a Health.
type Checks struct {
	env checkEnv
}

// NewChecks returns check constructors using cfg (defaults filled in).
func NewChecks(cfg HealthConfig) *Checks {
	return &Checks{env: checkEnv{cfg: cfg.WithDefaults(), now: time.Now}}
}

// JournalSource is what the journal check reads (*journal.Journal).
type JournalSource interface {
	Stats() journal.Stats
	Err() error
}

var _ JournalSource = (*journal.Journal)(nil)

// Journal checks the journal: failing while it cannot write (a sticky
// I/O error, a full disk, closed) or its fsync p99 is above
// FsyncFailing; degraded while the p99 is above FsyncDegraded or writers
// waited for the buffer within the window.
func (c *Checks) Journal(j JournalSource) CheckFunc {
	waits := c.env.window()
	return func() Check {
		st := j.Stats()
		var ch Check
		ch.measure("fsync_p99_seconds", st.FsyncP99.Seconds())
		ch.measure("bytes", float64(st.Bytes))
		ch.measure("segments", float64(st.Segments))
		ch.measure("undurable_events", float64(st.LastSeq-st.DurableSeq))
		w := waits.increase(float64(st.BackpressureWaits))
		ch.measure("backpressure_waits_window", w)
		if err := j.Err(); err != nil {
			switch {
			case errors.Is(err, journal.ErrNoSpace):
				ch.worse(StatusFailing, "the disk is full: writes are refused until space is freed")
			case errors.Is(err, journal.ErrClosed):
				ch.worse(StatusFailing, "the journal is closed")
			default:
				ch.worse(StatusFailing, "write error: %v", err)
			}
		}
		if st.FsyncP99 >= time.Duration(c.env.cfg.FsyncFailing) {
			ch.worse(StatusFailing, "fsync p99 %v is at least %v", st.FsyncP99, time.Duration(c.env.cfg.FsyncFailing))
		}
		if st.FsyncP99 >= time.Duration(c.env.cfg.FsyncDegraded) {
			ch.worse(StatusDegraded, "fsync p99 %v is at least %v", st.FsyncP99, time.Duration(c.env.cfg.FsyncDegraded))
		}
		if w > 0 {
			ch.worse(StatusDegraded, "writers waited for the write buffer %.0f times within %v", w, time.Duration(c.env.cfg.Window))
		}
		return ch
	}
}

// Disk checks space and inodes left under dir: failing below
// DiskFreeFailing of either, degraded below DiskFreeDegraded.
func (c *Checks) Disk(dir string) CheckFunc {
	return func() Check {
		var ch Check
		u, err := statDisk(dir)
		if err != nil {
			ch.worse(StatusFailing, "cannot stat the data directory's file system: %v", errors.Unwrap(err))
			return ch
		}
		ch.measure("free_bytes", float64(u.FreeBytes))
		ch.measure("total_bytes", float64(u.TotalBytes))
		ch.measure("free_inodes", float64(u.FreeInodes))
		ch.measure("total_inodes", float64(u.TotalInodes))
		for _, x := range []struct {
			what        string
			free, total uint64
		}{{"space", u.FreeBytes, u.TotalBytes}, {"inodes", u.FreeInodes, u.TotalInodes}} {
			if x.total == 0 {
				continue // file systems without inode counts
			}
			f := float64(x.free) / float64(x.total)
			ch.measure("free_"+x.what+"_ratio", f)
			if f < c.env.cfg.DiskFreeFailing {
				ch.worse(StatusFailing, "%.1f%% of the %s left under the data directory", 100*f, x.what)
			}
			if f < c.env.cfg.DiskFreeDegraded {
				ch.worse(StatusDegraded, "%.1f%% of the %s left under the data directory", 100*f, x.what)
			}
		}
		return ch
	}
}

// ManagerSource is what the subscriptions check reads
// (*propagate.Manager).
type ManagerSource interface {
	Stats() propagate.Stats
}

var _ ManagerSource = (*propagate.Manager)(nil)

// Subscriptions checks live subscriptions and durable consumers:
// degraded when a subscription dropped events within the window or its
// queue is QueueDegraded full, or a consumer is LagDegraded events
// behind or dead-lettered events within the window.
func (c *Checks) Subscriptions(m ManagerSource) CheckFunc {
	drops := c.env.window()
	dead := c.env.window()
	return func() Check {
		st := m.Stats()
		var ch Check
		var dropped, deadLettered, maxLag float64
		maxFill := 0.0
		fullest, laggiest := "", ""
		for _, s := range st.Subscriptions {
			dropped += float64(s.Dropped)
			if s.Capacity > 0 {
				if f := float64(s.Depth) / float64(s.Capacity); f > maxFill {
					maxFill, fullest = f, subName(s)
				}
			}
		}
		for _, ci := range st.Consumers {
			deadLettered += float64(ci.DeadLettered)
			if float64(ci.Lag) > maxLag {
				maxLag, laggiest = float64(ci.Lag), ci.Name
			}
		}
		ch.measure("subscriptions", float64(len(st.Subscriptions)))
		ch.measure("consumers_open", float64(len(st.Consumers)))
		ch.measure("max_queue_fill", maxFill)
		ch.measure("max_consumer_lag", maxLag)
		d := drops.increase(dropped)
		dl := dead.increase(deadLettered)
		ch.measure("dropped_window", d)
		ch.measure("dead_lettered_window", dl)
		if d > 0 {
			ch.worse(StatusDegraded, "live subscriptions dropped %.0f events within %v", d, time.Duration(c.env.cfg.Window))
		}
		if maxFill >= c.env.cfg.QueueDegraded {
			ch.worse(StatusDegraded, "subscription %s's queue is %.0f%% full", fullest, 100*maxFill)
		}
		if maxLag >= float64(c.env.cfg.LagDegraded) {
			ch.worse(StatusDegraded, "consumer %s is %.0f events behind", laggiest, maxLag)
		}
		if dl > 0 {
			ch.worse(StatusDegraded, "consumers dead-lettered %.0f events within %v", dl, time.Duration(c.env.cfg.Window))
		}
		return ch
	}
}

func subName(s propagate.SubscriptionStats) string {
	if s.Name != "" {
		return s.Name
	}
	return fmt.Sprintf("#%d", s.ID)
}

// WatcherSource is what the capture check reads (*fanotify.Watcher).
type WatcherSource interface {
	Stats() fanotify.Stats
}

var _ WatcherSource = (*fanotify.Watcher)(nil)

// Capture checks one tree's kernel watcher: degraded when the kernel
// queue overflowed, records were lost or handles could not be resolved
// within the window (each is recovered by a rescan, at a cost); failing
// when rescans could not read parts of the tree as well.
func (c *Checks) Capture(w WatcherSource) CheckFunc {
	over, lost, rescanErr := c.env.window(), c.env.window(), c.env.window()
	return func() Check {
		st := w.Stats()
		var ch Check
		o := over.increase(float64(st.Overflows))
		l := lost.increase(float64(st.LostRecords + st.HandleErrors + st.ParseErrors))
		re := rescanErr.increase(float64(st.RescanErrors))
		ch.measure("events_read", float64(st.EventsRead))
		ch.measure("overflows_window", o)
		ch.measure("lost_records_window", l)
		ch.measure("rescan_errors_window", re)
		ch.measure("unresolved", float64(st.Unresolved))
		if o > 0 && re > 0 {
			ch.worse(StatusFailing, "the kernel queue overflowed %.0f times and rescans failed %.0f times within %v", o, re, time.Duration(c.env.cfg.Window))
		}
		if o > 0 {
			ch.worse(StatusDegraded, "the kernel queue overflowed %.0f times within %v (rescans recover the changes)", o, time.Duration(c.env.cfg.Window))
		}
		if l > 0 {
			ch.worse(StatusDegraded, "%.0f kernel records lost or unreadable within %v", l, time.Duration(c.env.cfg.Window))
		}
		if re > 0 {
			ch.worse(StatusDegraded, "rescans could not read %.0f parts of the tree within %v", re, time.Duration(c.env.cfg.Window))
		}
		return ch
	}
}

// BridgeSource is what the bridge check reads (*bridge.Bridge).
type BridgeSource interface {
	Stats() bridge.Stats
}

var _ BridgeSource = (*bridge.Bridge)(nil)

// Bridge checks one tree's bridge: failing when it gave events up within
// the window (they are reported as fs.overflow), degraded when publishes
// failed, or PendingDegraded ops wait for a partner or the correlator.
func (c *Checks) Bridge(b BridgeSource) CheckFunc {
	lost, perr := c.env.window(), c.env.window()
	return func() Check {
		st := b.Stats()
		var ch Check
		l := lost.increase(float64(st.Lost))
		p := perr.increase(float64(st.PublishErrors))
		ch.measure("pending", float64(st.Pending))
		ch.measure("queued", float64(st.Queued))
		ch.measure("window_seconds", st.Window.Seconds())
		ch.measure("lost_window", l)
		ch.measure("publish_errors_window", p)
		if l > 0 {
			ch.worse(StatusFailing, "%.0f events given up within %v after retries", l, time.Duration(c.env.cfg.Window))
		}
		if p > 0 {
			ch.worse(StatusDegraded, "%.0f publish batches failed within %v", p, time.Duration(c.env.cfg.Window))
		}
		if n := st.Pending + st.Queued; n >= c.env.cfg.PendingDegraded {
			ch.worse(StatusDegraded, "%d ops wait for correlation", n)
		}
		return ch
	}
}

// FSSource is what the FUSE check reads (*fusefs.FS).
type FSSource interface {
	Stats() fusefs.Stats
}

var _ FSSource = (*fusefs.FS)(nil)

// FUSE checks one mount's FUSE server: degraded when cache invalidations
// were dropped within the window (readers may see stale data until the
// kernel's cache times out).
func (c *Checks) FUSE(f FSSource) CheckFunc {
	dropped := c.env.window()
	return func() Check {
		st := f.Stats()
		var ch Check
		d := dropped.increase(float64(st.InvalidationsDropped))
		ch.measure("write_calls", float64(st.WriteCalls))
		ch.measure("invalidations_dropped_window", d)
		if d > 0 {
			ch.worse(StatusDegraded, "%.0f cache invalidations dropped within %v", d, time.Duration(c.env.cfg.Window))
		}
		return ch
	}
}

// RulesSource is what the rules check reads (*rules.Engine).
type RulesSource interface {
	Stats() rules.Stats
	Rules() []rules.Info
}

var _ RulesSource = (*rules.Engine)(nil)

// Rules checks the rule engine against head, the journal's durable seq:
// degraded when it is LagDegraded events behind, lost events to retention
// or throttled matches within the window.
func (c *Checks) Rules(e RulesSource, head func() uint64) CheckFunc {
	gaps, thr := c.env.window(), c.env.window()
	return func() Check {
		st := e.Stats()
		var ch Check
		var throttled float64
		var names []string
		for _, r := range e.Rules() {
			throttled += float64(r.Counters.Throttled)
			if r.Counters.Throttled > 0 {
				names = append(names, r.Name)
			}
		}
		g := gaps.increase(float64(st.Gaps))
		t := thr.increase(throttled)
		lag := float64(0)
		if h := head(); h > st.Cursor {
			lag = float64(h - st.Cursor)
		}
		ch.measure("lag", lag)
		ch.measure("gaps_window", g)
		ch.measure("throttled_window", t)
		if g > 0 {
			ch.worse(StatusDegraded, "%.0f events lost to retention before the engine read them", g)
		}
		if lag >= float64(c.env.cfg.LagDegraded) {
			ch.worse(StatusDegraded, "the engine is %.0f events behind", lag)
		}
		if t > 0 {
			ch.worse(StatusDegraded, "%.0f matches throttled within %v (rules %s)", t, time.Duration(c.env.cfg.Window), strings.Join(names, ", "))
		}
		return ch
	}
}

// ActionSource is what the actions check reads (*action.Executor).
type ActionSource interface {
	Stats() action.Stats
}

var _ ActionSource = (*action.Executor)(nil)

// Actions checks the action executor: the share of actions that failed
// within the window against ErrorRateDegraded and ErrorRateFailing, and
// actions interrupted by a crash.
func (c *Checks) Actions(x ActionSource) CheckFunc {
	done, failed, intr := c.env.window(), c.env.window(), c.env.window()
	return func() Check {
		st := x.Stats()
		var ch Check
		d := done.increase(float64(st.Done))
		f := failed.increase(float64(st.Failed))
		i := intr.increase(float64(st.Interrupted))
		ch.measure("done_window", d)
		ch.measure("failed_window", f)
		ch.measure("interrupted_window", i)
		if d+f > 0 {
			r := f / (d + f)
			ch.measure("failure_ratio", r)
			if r >= c.env.cfg.ErrorRateFailing {
				ch.worse(StatusFailing, "%.0f%% of actions failed within %v", 100*r, time.Duration(c.env.cfg.Window))
			}
			if r >= c.env.cfg.ErrorRateDegraded {
				ch.worse(StatusDegraded, "%.0f%% of actions failed within %v", 100*r, time.Duration(c.env.cfg.Window))
			}
		}
		if i > 0 {
			ch.worse(StatusDegraded, "%.0f actions were interrupted and may or may not have run (see the audit trail)", i)
		}
		return ch
	}
}

// HTTP checks the API's answers, read from g (the daemon's registry):
// the share of 5xx among semprop_http_requests_total within the window
// against ErrorRateDegraded and ErrorRateFailing. 503 (not ready) and
// 507 (disk full) are left out: the journal's check reports those.
func (c *Checks) HTTP(g prometheus.Gatherer) CheckFunc {
	all, bad := c.env.window(), c.env.window()
	var mu sync.Mutex
	return func() Check {
		mu.Lock()
		defer mu.Unlock()
		var ch Check
		fams, err := g.Gather()
		if err != nil && len(fams) == 0 {
			ch.worse(StatusDegraded, "cannot read the request metrics")
			return ch
		}
		var total, errs float64
		for _, f := range fams {
			if f.GetName() != "semprop_http_requests_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				v := m.GetCounter().GetValue()
				total += v
				for _, l := range m.GetLabel() {
					if l.GetName() == "code" && strings.HasPrefix(l.GetValue(), "5") && l.GetValue() != "503" && l.GetValue() != "507" {
						errs += v
					}
				}
			}
		}
		t, e := all.increase(total), bad.increase(errs)
		ch.measure("requests_window", t)
		ch.measure("errors_window", e)
		if t > 0 {
			r := e / t
			ch.measure("error_ratio", r)
			if r >= c.env.cfg.ErrorRateFailing {
				ch.worse(StatusFailing, "%.0f%% of requests failed with 5xx within %v", 100*r, time.Duration(c.env.cfg.Window))
			}
			if r >= c.env.cfg.ErrorRateDegraded {
				ch.worse(StatusDegraded, "%.0f%% of requests failed with 5xx within %v", 100*r, time.Duration(c.env.cfg.Window))
			}
		}
		return ch
	}
}

// ClusterSource is what the cluster check reads (*cluster.Node).
type ClusterSource interface {
	Status() cluster.Status
}

var _ ClusterSource = (*cluster.Node)(nil)

// Cluster checks this node: failing while it is not ready (no quorum, no
// leader, catching up); degraded while a member is
// ReplicationLagDegraded entries behind or a peer's clock is off by more
// than ClockOffsetDegraded.
func (c *Checks) Cluster(n ClusterSource) CheckFunc {
	return func() Check {
		st := n.Status()
		var ch Check
		var maxLag uint64
		var maxOff time.Duration
		lagging, skewed := "", ""
		for _, m := range st.Members {
			if m.Lag > maxLag {
				maxLag, lagging = m.Lag, m.ID
			}
			if off := time.Duration(max(m.OffsetNS, -m.OffsetNS)); off > maxOff {
				maxOff, skewed = off, m.ID
			}
		}
		ready := 0.0
		if st.Ready {
			ready = 1
		}
		ch.measure("ready", ready)
		ch.measure("members", float64(len(st.Members)))
		ch.measure("max_replication_lag", float64(maxLag))
		ch.measure("max_clock_offset_seconds", maxOff.Seconds())
		if !st.Ready {
			r := st.Reason
			if r == "" {
				r = "not ready"
			}
			ch.worse(StatusFailing, "%s", r)
		}
		if maxLag >= c.env.cfg.ReplicationLagDegraded {
			ch.worse(StatusDegraded, "member %s is %d entries behind", lagging, maxLag)
		}
		if maxOff >= time.Duration(c.env.cfg.ClockOffsetDegraded) {
			ch.worse(StatusDegraded, "member %s's clock is %v off", skewed, maxOff)
		}
		return ch
	}
}
