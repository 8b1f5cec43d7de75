package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descReady    = prometheus.NewDesc("semprop_cluster_ready", "1 if this node can commit writes (has a leader with a quorum), else 0.", nil, nil)
	descLeader   = prometheus.NewDesc("semprop_cluster_leader", "1 if this node is the Raft leader.", nil, nil)
	descCommit   = prometheus.NewDesc("semprop_cluster_commit_index", "Raft commit index known to this node.", nil, nil)
	descApplied  = prometheus.NewDesc("semprop_cluster_applied_index", "Last log index applied to this node's journal.", nil, nil)
	descRestores = prometheus.NewDesc("semprop_cluster_snapshot_restores_total", "Snapshots restored.", nil, nil)
	descFetched  = prometheus.NewDesc("semprop_cluster_records_fetched_total", "Journal records fetched from peers after a snapshot restore.", nil, nil)
	descOffset   = prometheus.NewDesc("semprop_cluster_peer_clock_offset_seconds", "Peer clock minus local clock (NTP-style estimate).", []string{"peer"}, nil)
	descOffErr   = prometheus.NewDesc("semprop_cluster_peer_clock_error_seconds", "Error bound of the offset estimate (RTT/2).", []string{"peer"}, nil)
	descLag      = prometheus.NewDesc("semprop_cluster_peer_lag_entries", "Commit index minus the member's applied index.", []string{"peer"}, nil)
	descRefused  = prometheus.NewDesc("semprop_cluster_peer_refused", "1 if the peer is refused for its clock offset.", []string{"peer"}, nil)
	descConnRef  = prometheus.NewDesc("semprop_cluster_refused_connections_total",
		"Connections to the Raft port refused: failed TLS handshakes (no member certificate), or too many handshakes at once.", nil, nil)
)

// Collector returns a Prometheus collector of the node's cluster state:
// readiness, leadership, indexes, refused connections to the Raft port, and
// per-peer clock offset, error bound, lag and refusal. Register it with the daemon's registry.
func (n *Node) Collector() prometheus.Collector { return (*collector)(n) }

type collector Node

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReady, descLeader, descCommit, descApplied, descRestores, descFetched, descOffset, descOffErr, descLag, descRefused, descConnRef} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	n := (*Node)(c)
	st := n.Status()
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, b(st.Ready))
	ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, b(st.Leader == st.ID))
	ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(st.CommitIndex))
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(st.AppliedIndex))
	ch <- prometheus.MustNewConstMetric(descRestores, prometheus.CounterValue, float64(st.Restores))
	ch <- prometheus.MustNewConstMetric(descFetched, prometheus.CounterValue, float64(st.Fetched))
	ch <- prometheus.MustNewConstMetric(descConnRef, prometheus.CounterValue, float64(n.stream.refused.Load()))
	for _, m := range st.Members {
		if m.Self {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descOffset, prometheus.GaugeValue, float64(m.OffsetNS)/1e9, m.ID)
		ch <- prometheus.MustNewConstMetric(descOffErr, prometheus.GaugeValue, float64(m.ErrorNS)/1e9, m.ID)
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(m.Lag), m.ID)
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.GaugeValue, b(m.Refused != ""), m.ID)
	}
}
