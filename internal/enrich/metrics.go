package enrich

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/metrics"
)

type counter struct {
	desc *prometheus.Desc
	val  func(*counters) uint64
}

func desc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("semprop_enrich_"+name, help, []string{"tree"}, nil)
}

var counterDescs = []counter{
	{desc("events_total", "Events taken from the bridge."), func(c *counters) uint64 { return c.events.Load() }},
	{desc("ignored_total", "Events dropped by ignore rules before they were journaled."), func(c *counters) uint64 { return c.ignored.Load() }},
	{desc("enriched_total", "Events that got content facts."), func(c *counters) uint64 { return c.enriched.Load() }},
	{desc("unchanged_total", "Enriched events whose content was the last known content (changed=false)."), func(c *counters) uint64 { return c.unchanged.Load() }},
	{desc("gone_total", "Events flagged enrich=gone: the file was gone before it could be read."), func(c *counters) uint64 { return c.gone.Load() }},
	{desc("skipped_total", "Events flagged enrich=skipped: the wait ran out or the queue was full."), func(c *counters) uint64 { return c.skipped.Load() }},
	{desc("queue_full_total", "Skipped events whose file could not be queued (the queue was full)."), func(c *counters) uint64 { return c.queueFull.Load() }},
	{desc("toolarge_total", "Events flagged enrich=toolarge: the file is above the size limit."), func(c *counters) uint64 { return c.tooLarge.Load() }},
	{desc("coalesced_total", "Reads superseded by a newer event of the same path (only the latest version is read)."), func(c *counters) uint64 { return c.coalesced.Load() }},
	{desc("errors_total", "Events flagged enrich=error: the file could not be read."), func(c *counters) uint64 { return c.errors.Load() }},
	{desc("read_bytes_total", "Content bytes read."), func(c *counters) uint64 { return c.bytes.Load() }},
	{desc("vcs_held_total", "Events under .git/ held during git operations."), func(c *counters) uint64 { return c.vcsHeld.Load() }},
	{desc("vcs_ops_total", "Git operations ended (a vcs.git event each in summarise mode)."), func(c *counters) uint64 { return c.vcsOps.Load() }},
	{desc("retries_total", "Batches re-sent unchanged after the next publisher failed."), func(c *counters) uint64 { return c.retries.Load() }},
}

var (
	descQueued  = desc("queued", "Paths waiting for a content reader now.")
	descIndexed = desc("indexed", "Paths in the index of last-known facts now.")
	descDelay   = desc("delay_seconds", "Time a batch spent in enrichment before it was passed on.")
)

// Collector returns a Prometheus collector of the Publisher, labelled
// tree=TREE: its counters, the queued and indexed gauges and the delay
// histogram. Values are read at scrape time. Register it once per
// Publisher; it is safe for concurrent use.
func (p *Publisher) Collector(tree string) prometheus.Collector {
	return &collector{p: p, tree: tree}
}

type collector struct {
	p    *Publisher
	tree string
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, k := range counterDescs {
		ch <- k.desc
	}
	ch <- descQueued
	ch <- descIndexed
	ch <- descDelay
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, k := range counterDescs {
		metrics.Counter(ch, k.desc, k.val(&c.p.st), c.tree)
	}
	st := c.p.Stats()
	metrics.Gauge(ch, descQueued, float64(st.Queued), c.tree)
	metrics.Gauge(ch, descIndexed, float64(st.Indexed), c.tree)
	ch <- c.p.st.delay.Metric(descDelay, c.tree)
}
