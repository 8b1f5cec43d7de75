// Package metrics holds what semprop's Prometheus collectors share. Each
// component exports its own typed collector from its own package (a
// metrics.go file beside its Stats): counters are counters, gauges are
// gauges, latencies are histograms, and labels are stable. This package
// gives them a cheap latency histogram to observe on hot paths and small
// helpers to emit constant metrics at scrape time, so metrics cost
// (almost) nothing on the publish path.
package metrics

import (
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Bucket bounds of a Histogram: powers of two nanoseconds from
// 2^MinExp ns (about 1µs) to 2^MaxExp ns (about 17s).
const (
	MinExp = 10
	MaxExp = 34
	// nBuckets counts the finite buckets plus the one above 2^MaxExp ns.
	nBuckets = MaxExp - MinExp + 2
)

// Histogram counts durations in fixed buckets whose upper bounds are
// powers of two nanoseconds (see MinExp, MaxExp): the bucket layout never
// changes, so exported series are stable between scrapes. Observe is
// lock-free and allocation-free (two atomic adds); every method is safe
// for concurrent use. The zero value is ready to use.
type Histogram struct {
	buckets [nBuckets]atomic.Uint64
	sum     atomic.Int64 // nanoseconds
}

// bucketOf returns the index of the smallest bucket whose bound is >= ns.
func bucketOf(ns int64) int {
	if ns <= 1<<MinExp {
		return 0
	}
	i := bits.Len64(uint64(ns-1)) - MinExp // ns <= 2^(i+MinExp)
	return min(i, nBuckets-1)
}

// Observe records one duration in nanoseconds (negative counts as 0).
func (h *Histogram) Observe(ns int64) {
	if ns < 0 {
		ns = 0
	}
	h.buckets[bucketOf(ns)].Add(1)
	h.sum.Add(ns)
}

// ObserveDuration records one duration.
func (h *Histogram) ObserveDuration(d time.Duration) { h.Observe(int64(d)) }

// Bounds returns the upper bounds of the finite buckets, in seconds.
func Bounds() []float64 {
	b := make([]float64, 0, nBuckets-1)
	for e := MinExp; e <= MaxExp; e++ {
		b = append(b, float64(int64(1)<<e)/1e9)
	}
	return b
}

// Snapshot returns the observation count, the sum in seconds and the
// cumulative count of each finite bucket (by bound in seconds), as
// prometheus.MustNewConstHistogram takes them. Count is the sum of the
// buckets read, so the snapshot is consistent even while observations
// land (the sum may lag by the observations in flight).
func (h *Histogram) Snapshot() (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, nBuckets-1)
	for i := range nBuckets {
		count += h.buckets[i].Load()
		if i < nBuckets-1 {
			buckets[float64(int64(1)<<(i+MinExp))/1e9] = count
		}
	}
	return count, float64(h.sum.Load()) / 1e9, buckets
}

// Quantile returns an upper bound of the q-quantile (0 < q <= 1) of the
// observations: the bound of the bucket that holds it, so at most twice
// the true value. 0 without observations; above the last bound, the last
// bound.
func (h *Histogram) Quantile(q float64) time.Duration {
	var counts [nBuckets]uint64
	var total uint64
	for i := range nBuckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i := range nBuckets {
		if seen += counts[i]; seen >= rank {
			return time.Duration(int64(1) << min(i+MinExp, MaxExp))
		}
	}
	return time.Duration(int64(1) << MaxExp)
}

// Metric returns h as a constant histogram metric of desc.
func (h *Histogram) Metric(desc *prometheus.Desc, labelValues ...string) prometheus.Metric {
	n, sum, b := h.Snapshot()
	return prometheus.MustNewConstHistogram(desc, n, sum, b, labelValues...)
}

// Counter sends a counter sample of desc. v must never decrease over the
// life of the series.
func Counter(ch chan<- prometheus.Metric, desc *prometheus.Desc, v uint64, labelValues ...string) {
	ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labelValues...)
}

// Gauge sends a gauge sample of desc.
func Gauge(ch chan<- prometheus.Metric, desc *prometheus.Desc, v float64, labelValues ...string) {
	ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labelValues...)
}

// Bool is 1 for true, 0 for false: the value of a boolean gauge.
func Bool(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Descs is a fixed list of descriptors, the Describe half of a collector.
type Descs []*prometheus.Desc

// Describe sends every descriptor.
func (ds Descs) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range ds {
		ch <- d
	}
}
