package analytics

import (
	"github.com/prometheus/client_golang/prometheus"
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("semprop_analytics_"+name, help, labels, nil)
}

var (
	descEvents    = desc("events_total", "Durable events folded into the aggregates.")
	descLate      = desc("late_events_total", "Events older than the watermark, counted in the oldest open pane.")
	descCursor    = desc("cursor", "Last journal seq the aggregates include.")
	descInsights  = desc("insights_total", "Insights found, by kind.", "kind")
	descPublished = desc("insights_published_total", "Insight events published.")
	descDropped   = desc("insights_dropped_total", "Insights not published (queue full or publish failed).")
	descStoreErrs = desc("store_errors_total", "Rollups the history store failed to write.")
	descViews     = desc("views", "Sets of aggregates kept: the engine's own and one per token.")
)

// Collector returns a Prometheus collector of the engine's counters, read
// at scrape time. Register it once per engine.
func (e *Engine) Collector() prometheus.Collector { return (*collector)(e) }

type collector Engine

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEvents, descLate, descCursor, descInsights, descPublished, descDropped, descStoreErrs, descViews} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	e := (*Engine)(c)
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descEvents, e.events.Load())
	counter(descLate, e.late.Load())
	counter(descPublished, e.published.Load())
	counter(descDropped, e.dropped.Load())
	counter(descStoreErrs, e.storeErrs.Load())
	ch <- prometheus.MustNewConstMetric(descCursor, prometheus.GaugeValue, float64(e.cursor.Load()))
	ch <- prometheus.MustNewConstMetric(descViews, prometheus.GaugeValue, float64(len(e.order)))
	kinds := map[string]uint64{KindSpike: 0, KindDrop: 0, KindNewWriter: 0, KindUnusualHour: 0}
	e.insightMu.Lock()
	for k, n := range e.kindCounts {
		kinds[k] = n
	}
	e.insightMu.Unlock()
	for k, n := range kinds {
		counter(descInsights, n, k)
	}
}
