package rules

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/cep"
	"github.com/semprop/semprop/internal/metrics"
)

func ruleDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("semprop_rule_"+name, help, []string{"rule"}, nil)
}

func engineDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("semprop_rules_"+name, help, nil, nil)
}

// ruleCounters are the per-rule counters; a rule whose definition changes
// on reload starts again from 0 (a counter reset).
var ruleCounters = []struct {
	desc *prometheus.Desc
	val  func(*cep.Counters) uint64
}{
	{ruleDesc("events_total", "Events shown to the rule."), func(c *cep.Counters) uint64 { return c.Events }},
	{ruleDesc("matches_total", "Matches published."), func(c *cep.Counters) uint64 { return c.Matches }},
	{ruleDesc("suppressed_total", "Matches suppressed by the cooldown."), func(c *cep.Counters) uint64 { return c.Suppressed }},
	{ruleDesc("throttled_total", "Matches dropped by the rate limit."), func(c *cep.Counters) uint64 { return c.Throttled }},
	{ruleDesc("late_total", "Events of the rule's types dropped as late."), func(c *cep.Counters) uint64 { return c.Late }},
	{ruleDesc("keys_evicted_total", "Keys evicted by the max_keys limit."), func(c *cep.Counters) uint64 { return c.KeysEvicted }},
	{ruleDesc("evicted_total", "Partial matches, triggers or window events evicted by the max_partials limit."), func(c *cep.Counters) uint64 { return c.Evicted }},
	{ruleDesc("purged_total", "Idle keys removed."), func(c *cep.Counters) uint64 { return c.Purged }},
}

var (
	descEval      = ruleDesc("eval_seconds_total", "Time spent evaluating the rule (sampled one event in 64, scaled).")
	descKeys      = ruleDesc("keys", "Keys with state now.")
	descPartials  = ruleDesc("partials", "Partial matches, pending triggers or window events now.")
	descCursor    = engineDesc("cursor", "Last journal seq the rules matched.")
	descPublished = engineDesc("published_total", "Rule events published.")
	descSkipped   = engineDesc("skipped_total", "Matches recomputed after a crash that had been published before it.")
	descLate      = engineDesc("late_total", "Events dropped as late.")
	descGaps      = engineDesc("gaps_total", "Events lost to retention before the rules read them.")
)

// Collector returns a Prometheus collector of the engine: per rule (label
// rule) its counters and state gauges, and the engine's cursor and
// totals. Values are read at scrape time. Register it once per engine.
func (e *Engine) Collector() prometheus.Collector { return &collector{e: e} }

type collector struct{ e *Engine }

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, rc := range ruleCounters {
		ch <- rc.desc
	}
	metrics.Descs{descEval, descKeys, descPartials, descCursor, descPublished, descSkipped, descLate, descGaps}.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, in := range c.e.Rules() {
		if !in.Enabled {
			continue
		}
		for _, rc := range ruleCounters {
			metrics.Counter(ch, rc.desc, rc.val(&in.Counters), in.Name)
		}
		ch <- prometheus.MustNewConstMetric(descEval, prometheus.CounterValue, float64(in.Counters.EvalNanos)/1e9, in.Name)
		metrics.Gauge(ch, descKeys, float64(in.Counters.Keys), in.Name)
		metrics.Gauge(ch, descPartials, float64(in.Counters.Partials), in.Name)
	}
	st := c.e.Stats()
	metrics.Gauge(ch, descCursor, float64(st.Cursor))
	metrics.Counter(ch, descPublished, st.Published)
	metrics.Counter(ch, descSkipped, st.Skipped)
	metrics.Counter(ch, descLate, st.Late)
	metrics.Counter(ch, descGaps, st.Gaps)
}
