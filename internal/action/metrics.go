package action

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/metrics"
)

func actionDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("semprop_actions_"+name, help, nil, nil)
}

var (
	descCursor      = actionDesc("cursor", "Last journal seq the action executor read.")
	descMatches     = actionDesc("matches_total", "Rule matches with actions handled.")
	descDone        = actionDesc("done_total", "Actions done.")
	descFailed      = actionDesc("failed_total", "Actions failed (preconditions included).")
	descInterrupted = actionDesc("interrupted_total", "Actions in flight at a crash that could not tell whether they ran.")
	descRecovered   = actionDesc("recovered_total", "Actions in flight at a crash found done.")
	descRollbacks   = actionDesc("rollbacks_total", "Rollbacks run.")
	descRollbacksOK = actionDesc("rollbacks_ok_total", "Rollbacks that succeeded.")
	descOutcomes    = prometheus.NewDesc("semprop_actions_outcomes_total", "Match outcomes.", []string{"outcome"}, nil)
)

// Collector returns a Prometheus collector of the executor's counters,
// read at scrape time. Register it once per executor.
func (x *Executor) Collector() prometheus.Collector { return &collector{x: x} }

type collector struct{ x *Executor }

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	metrics.Descs{descCursor, descMatches, descDone, descFailed, descInterrupted, descRecovered, descRollbacks, descRollbacksOK, descOutcomes}.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.x.Stats()
	metrics.Gauge(ch, descCursor, float64(st.Cursor))
	metrics.Counter(ch, descMatches, st.Matches)
	metrics.Counter(ch, descDone, st.Done)
	metrics.Counter(ch, descFailed, st.Failed)
	metrics.Counter(ch, descInterrupted, st.Interrupted)
	metrics.Counter(ch, descRecovered, st.Recovered)
	metrics.Counter(ch, descRollbacks, st.Rollbacks)
	metrics.Counter(ch, descRollbacksOK, st.RollbacksOK)
	metrics.Counter(ch, descOutcomes, st.OK, OutcomeOK)
	metrics.Counter(ch, descOutcomes, st.Failures, OutcomeFailed)
	metrics.Counter(ch, descOutcomes, st.RolledBack, OutcomeRolledBack)
}
