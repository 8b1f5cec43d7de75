// Package metrics exposes semprop's counters to Prometheus. Components keep
// their own cheap counters (atomics) and a Stats snapshot; the collectors
// here read those snapshots at scrape time, so metrics cost nothing on the
// publish path.
package metrics

import (
	"cmp"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/propagate"
)

// StatsCollector turns every numeric field of a Stats struct into a metric
// named semprop_<subsystem>_<field in snake case>, with the given constant
// labels. Fields named in gauges are gauges; the others are counters
// (suffix _total). A map[string]uint64 field becomes one counter with a
// "key" label. It is safe for concurrent use.
type StatsCollector struct {
	subsystem string
	labels    prometheus.Labels
	gauges    map[string]bool
	stats     func() any

	once  sync.Once
	descs map[string]*prometheus.Desc
}

var _ prometheus.Collector = (*StatsCollector)(nil)

// NewStatsCollector returns a collector over stats, which must return a
// struct (or pointer to one) each time it is called.
func NewStatsCollector(subsystem string, labels prometheus.Labels, stats func() any, gauges ...string) *StatsCollector {
	g := make(map[string]bool, len(gauges))
	for _, n := range gauges {
		g[n] = true
	}
	return &StatsCollector{subsystem: subsystem, labels: labels, gauges: g, stats: stats}
}

func snake(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]))) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (c *StatsCollector) name(field string) string {
	n := "semprop_" + c.subsystem + "_" + snake(field)
	if !c.gauges[field] && !strings.HasSuffix(n, "_total") {
		n += "_total"
	}
	return n
}

// fields lists the exported numeric (and map) fields of v's struct type.
func fields(v reflect.Value) []reflect.StructField {
	var out []reflect.StructField
	for _, f := range reflect.VisibleFields(v.Type()) {
		if !f.IsExported() || len(f.Index) > 1 {
			continue
		}
		switch f.Type.Kind() {
		case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64, reflect.Float64:
			out = append(out, f)
		case reflect.Map:
			if f.Type.Key().Kind() == reflect.String && f.Type.Elem().Kind() == reflect.Uint64 {
				out = append(out, f)
			}
		}
	}
	return out
}

func structOf(x any) reflect.Value {
	v := reflect.ValueOf(x)
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	return v
}

func (c *StatsCollector) init() {
	c.once.Do(func() {
		c.descs = make(map[string]*prometheus.Desc)
		used := make(map[string]bool)
		fs := fields(structOf(c.stats()))
		// Map fields first: they keep the plain name (ops_total{key=...});
		// a scalar that would collide (OpsTotal) gets an _all suffix.
		isMap := func(f reflect.StructField) int {
			if f.Type.Kind() == reflect.Map {
				return 0
			}
			return 1
		}
		slices.SortStableFunc(fs, func(a, b reflect.StructField) int { return cmp.Compare(isMap(a), isMap(b)) })
		for _, f := range fs {
			var vars []string
			if f.Type.Kind() == reflect.Map {
				vars = []string{"key"}
			}
			name := c.name(f.Name)
			if used[name] {
				name = strings.TrimSuffix(name, "_total") + "_all"
				if !c.gauges[f.Name] {
					name += "_total"
				}
			}
			used[name] = true
			help := c.subsystem + " " + f.Name
			c.descs[f.Name] = prometheus.NewDesc(name, help, vars, c.labels)
		}
	})
}

// Describe implements prometheus.Collector.
func (c *StatsCollector) Describe(ch chan<- *prometheus.Desc) {
	c.init()
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *StatsCollector) Collect(ch chan<- prometheus.Metric) {
	c.init()
	v := structOf(c.stats())
	for _, f := range fields(v) {
		d := c.descs[f.Name]
		if d == nil {
			continue
		}
		typ := prometheus.CounterValue
		if c.gauges[f.Name] {
			typ = prometheus.GaugeValue
		}
		fv := v.FieldByIndex(f.Index)
		switch fv.Kind() {
		case reflect.Map:
			for _, k := range fv.MapKeys() {
				ch <- prometheus.MustNewConstMetric(d, typ, float64(fv.MapIndex(k).Uint()), k.String())
			}
		case reflect.Int, reflect.Int32, reflect.Int64:
			ch <- prometheus.MustNewConstMetric(d, typ, float64(fv.Int()))
		case reflect.Uint, reflect.Uint32, reflect.Uint64:
			ch <- prometheus.MustNewConstMetric(d, typ, float64(fv.Uint()))
		case reflect.Float64:
			ch <- prometheus.MustNewConstMetric(d, typ, fv.Float())
		}
	}
}

// ManagerCollector exposes the propagation manager: events published,
// per-subscription delivered/matched/dropped counters and queue depths,
// per-consumer state, and the sequenced → delivered latency histogram.
type ManagerCollector struct {
	m *propagate.Manager
}

var _ prometheus.Collector = (*ManagerCollector)(nil)

// NewManagerCollector returns a collector over m.
func NewManagerCollector(m *propagate.Manager) *ManagerCollector { return &ManagerCollector{m: m} }

var (
	descPublished = prometheus.NewDesc("semprop_published_events_total", "Events published (sequenced and durable).", nil, nil)
	descDelivered = prometheus.NewDesc("semprop_subscription_delivered_total", "Events taken by a live subscriber.", []string{"subscription"}, nil)
	descMatched   = prometheus.NewDesc("semprop_subscription_matched_total", "Events that matched a live subscription.", []string{"subscription"}, nil)
	descDropped   = prometheus.NewDesc("semprop_subscription_dropped_total", "Events a live subscription dropped under its policy.", []string{"subscription", "policy"}, nil)
	descDepth     = prometheus.NewDesc("semprop_subscription_queue_depth", "Events queued for a live subscriber.", []string{"subscription"}, nil)
	descCapacity  = prometheus.NewDesc("semprop_subscription_queue_capacity", "Queue capacity of a live subscription.", []string{"subscription"}, nil)
	descLatency   = prometheus.NewDesc("semprop_delivery_latency_seconds", "Time from sequencing to a live subscriber taking the event.", nil, nil)
	descCons      = prometheus.NewDesc("semprop_consumer_events_total", "Durable consumer deliveries by outcome.", []string{"consumer", "outcome"}, nil)
	descPending   = prometheus.NewDesc("semprop_consumer_pending", "Durable consumer deliveries awaiting ack.", []string{"consumer"}, nil)
	descFloor     = prometheus.NewDesc("semprop_consumer_ack_floor", "Durable consumer ack floor (seq).", []string{"consumer"}, nil)
)

// Describe implements prometheus.Collector.
func (c *ManagerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPublished, descDelivered, descMatched, descDropped, descDepth, descCapacity, descLatency, descCons, descPending, descFloor} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ManagerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.Stats()
	ch <- prometheus.MustNewConstMetric(descPublished, prometheus.CounterValue, float64(st.Published))
	for i, s := range st.Subscriptions {
		name := s.Name
		if name == "" {
			name = "anon-" + strconv.Itoa(i)
		}
		ch <- prometheus.MustNewConstMetric(descDelivered, prometheus.CounterValue, float64(s.Delivered), name)
		ch <- prometheus.MustNewConstMetric(descMatched, prometheus.CounterValue, float64(s.Matched), name)
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.Dropped), name, s.Policy.String())
		ch <- prometheus.MustNewConstMetric(descDepth, prometheus.GaugeValue, float64(s.Depth), name)
		ch <- prometheus.MustNewConstMetric(descCapacity, prometheus.GaugeValue, float64(s.Capacity), name)
	}
	for _, ci := range st.Consumers {
		for outcome, n := range map[string]uint64{"delivered": ci.Delivered, "redelivered": ci.Redelivered, "acked": ci.Acked, "dead_lettered": ci.DeadLettered, "lost_to_retention": ci.Gaps} {
			ch <- prometheus.MustNewConstMetric(descCons, prometheus.CounterValue, float64(n), ci.Name, outcome)
		}
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(ci.Pending), ci.Name)
		ch <- prometheus.MustNewConstMetric(descFloor, prometheus.GaugeValue, float64(ci.AckFloor), ci.Name)
	}
	buckets := make(map[float64]uint64, len(st.Latency.Buckets))
	var cum uint64
	for _, b := range st.Latency.Buckets {
		cum += b.Count
		buckets[b.Le.Seconds()] = cum
	}
	ch <- prometheus.MustNewConstHistogram(descLatency, st.Latency.Count, st.Latency.Sum.Seconds(), buckets)
}
