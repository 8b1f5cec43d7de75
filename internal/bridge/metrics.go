package bridge

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/metrics"
)

// bridgeCounter is one counter of the bridge's collector.
type bridgeCounter struct {
	desc *prometheus.Desc
	val  func(*counters) uint64
}

func bridgeDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("semprop_bridge_"+name, help, []string{"tree"}, nil)
}

var bridgeCounters = []bridgeCounter{
	{bridgeDesc("seen_kernel_total", "Ops taken from the kernel boundary."), func(c *counters) uint64 { return c.seenKernel.Load() }},
	{bridgeDesc("seen_fuse_total", "Ops taken from the FUSE boundary."), func(c *counters) uint64 { return c.seenFUSE.Load() }},
	{bridgeDesc("shadows_total", "Kernel ops made by the daemon itself (the FUSE server's own writes)."), func(c *counters) uint64 { return c.shadows.Load() }},
	{bridgeDesc("merged_total", "Shadows merged into their FUSE op's event."), func(c *counters) uint64 { return c.merged.Load() }},
	{bridgeDesc("absorbed_total", "Stray shadows explained by a recent FUSE op on the same file (not published); a late FUSE op may still pair one (late_fuse_total)."), func(c *counters) uint64 { return c.absorbedSeen.Load() }},
	{bridgeDesc("orphans_total", "Shadows whose window ended without their FUSE op; a late FUSE op may still pair one (late_fuse_total)."), func(c *counters) uint64 { return c.orphansSeen.Load() }},
	{bridgeDesc("late_shadows_total", "Shadows that came after their FUSE op was published alone (they widen the window)."), func(c *counters) uint64 { return c.late.Load() }},
	{bridgeDesc("late_fuse_total", "FUSE ops that came after their shadow's window and were paired with it (they widen the window)."), func(c *counters) uint64 { return c.lateFUSE.Load() }},
	{bridgeDesc("stall_waits_total", "Extra windows FUSE ops waited while the kernel boundary delivered nothing during a burst."), func(c *counters) uint64 { return c.stallWaits.Load() }},
	{bridgeDesc("passthrough_merged_total", "Kernel writes by the writer paired with a FUSE passthrough write."), func(c *counters) uint64 { return c.passthroughMerged.Load() }},
	{bridgeDesc("coalesced_total", "Further FUSE ops of one kind and file that one kernel op stood for (the kernel merges identical queued events)."), func(c *counters) uint64 { return c.coalesced.Load() }},
	{bridgeDesc("fuse_only_total", "FUSE ops published without a kernel partner."), func(c *counters) uint64 { return c.fuseOnly.Load() }},
	{bridgeDesc("kernel_only_total", "Kernel ops published alone (direct changes; kernel-only trees)."), func(c *counters) uint64 { return c.kernelOnly.Load() }},
	{bridgeDesc("dedup_hits_total", "Repeats dropped (the same op reported twice)."), func(c *counters) uint64 { return c.dedupHits.Load() }},
	{bridgeDesc("rescan_covered_total", "Rescan reports of paths a FUSE op published alone had changed (not published twice)."), func(c *counters) uint64 { return c.rescanCovered.Load() }},
	{bridgeDesc("invalidations_total", "FUSE cache invalidations sent for kernel-only changes."), func(c *counters) uint64 { return c.invalidations.Load() }},
	{bridgeDesc("emitted_total", "Events published."), func(c *counters) uint64 { return c.emitted.Load() }},
	{bridgeDesc("batches_total", "PublishBatch calls that succeeded."), func(c *counters) uint64 { return c.batches.Load() }},
	{bridgeDesc("publish_errors_total", "PublishBatch calls that failed."), func(c *counters) uint64 { return c.publishErrors.Load() }},
	{bridgeDesc("lost_total", "Events given up after retries (reported as fs.overflow, reason publish)."), func(c *counters) uint64 { return c.lost.Load() }},
	{bridgeDesc("loss_reports_total", "fs.overflow events published for events this bridge lost."), func(c *counters) uint64 { return c.lossReports.Load() }},
	{bridgeDesc("invalid_total", "Ops that could not be translated into an event (reported as fs.overflow, reason invalid)."), func(c *counters) uint64 { return c.invalid.Load() }},
	{bridgeDesc("queue_full_total", "Emit calls that waited for room in the input queue (backpressure)."), func(c *counters) uint64 { return c.queueFull.Load() }},
	{bridgeDesc("closed_total", "Ops emitted after the bridge stopped (dropped)."), func(c *counters) uint64 { return c.closed.Load() }},
}

var (
	descPending = bridgeDesc("pending", "Ops waiting for their partner now.")
	descQueued  = bridgeDesc("queued", "Ops waiting for the correlator now.")
	descWindow  = bridgeDesc("window_seconds", "Correlation window in effect now (it widens while a boundary lags).")
	descDelay   = bridgeDesc("correlation_delay_seconds", "Time from the correlator taking an event's op to releasing the event for publishing.")
)

// Collector returns a Prometheus collector of the bridge, labelled
// tree=TREE (the mount point, or the watched root): its counters, the
// pending, queued and window gauges and the correlation delay histogram.
// Values are read at scrape time. Register it once per bridge.
func (b *Bridge) Collector(tree string) prometheus.Collector {
	return &collector{b: b, tree: tree}
}

type collector struct {
	b    *Bridge
	tree string
}

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, bc := range bridgeCounters {
		ch <- bc.desc
	}
	metrics.Descs{descPending, descQueued, descWindow, descDelay}.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := &c.b.st
	for _, bc := range bridgeCounters {
		metrics.Counter(ch, bc.desc, bc.val(st), c.tree)
	}
	s := c.b.Stats()
	metrics.Gauge(ch, descPending, float64(s.Pending), c.tree)
	metrics.Gauge(ch, descQueued, float64(s.Queued), c.tree)
	metrics.Gauge(ch, descWindow, s.Window.Seconds(), c.tree)
	ch <- st.delay.Metric(descDelay, c.tree)
}
