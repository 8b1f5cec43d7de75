package replica

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the replica's counters, read by its collector.
type metrics struct {
	local, remote, collected   atomic.Uint64
	bytesSent, bytesReceived   atomic.Uint64
	chunksSent, chunksReceived atomic.Uint64
	exchangesServed, saves     atomic.Uint64
	partial                    atomic.Uint64    // deltas applied without their summary
	reads                      [4]atomic.Uint64 // by Consistency
}

func (m *metrics) init() {}

var (
	descEntries   = prometheus.NewDesc("semprop_sync_entries", "Keys in the sync catalog, by state (live, tombstone, conflict).", []string{"state"}, nil)
	descChanges   = prometheus.NewDesc("semprop_sync_changes_total", "Versions added to the catalog, by origin (local events or remote peers).", []string{"origin"}, nil)
	descCollected = prometheus.NewDesc("semprop_sync_tombstones_collected_total", "Tombstones removed once every peer acknowledged them.", nil, nil)
	descBytes     = prometheus.NewDesc("semprop_sync_bytes_total", "Compressed bytes of exchanges this instance started, by direction.", []string{"direction"}, nil)
	descChunks    = prometheus.NewDesc("semprop_sync_chunks_total", "Chunks of full-state transfers, by direction.", []string{"direction"}, nil)
	descServed    = prometheus.NewDesc("semprop_sync_exchanges_served_total", "Exchanges peers started with this instance.", nil, nil)
	descPeers     = prometheus.NewDesc("semprop_sync_peers", "Known peers, by status (ok, failing).", []string{"status"}, nil)
	descApplied   = prometheus.NewDesc("semprop_sync_applied_seq", "Last journal seq the catalog has ingested.", nil, nil)
	descReads     = prometheus.NewDesc("semprop_sync_reads_total", "State reads, by consistency.", []string{"consistency"}, nil)
	descSaves     = prometheus.NewDesc("semprop_sync_saves_total", "Catalog checkpoints written.", nil, nil)
	descPartial   = prometheus.NewDesc("semprop_sync_partial_deltas_total", "Deltas whose base this replica had not reached: their changes were applied, their summary not.", nil, nil)
)

type collector struct{ r *Replica }

// Collector returns the replica's metrics.
func (r *Replica) Collector() prometheus.Collector { return collector{r} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEntries, descChanges, descCollected, descBytes, descChunks, descServed, descPeers, descApplied, descReads, descSaves, descPartial} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	r := c.r
	r.mu.RLock()
	n, tomb, conflicts := r.state.Len(), r.state.Tombstones(), r.state.conflicts()
	applied := r.applied
	r.mu.RUnlock()
	ok, failing := 0, 0
	r.peersMu.Lock()
	for _, p := range r.peers {
		if p.fails > 0 {
			failing++
		} else {
			ok++
		}
	}
	r.peersMu.Unlock()
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	cnt := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	g(descEntries, float64(n-tomb), "live")
	g(descEntries, float64(tomb), "tombstone")
	g(descEntries, float64(conflicts), "conflict")
	cnt(descChanges, r.met.local.Load(), "local")
	cnt(descChanges, r.met.remote.Load(), "remote")
	cnt(descCollected, r.met.collected.Load())
	cnt(descBytes, r.met.bytesSent.Load(), "sent")
	cnt(descBytes, r.met.bytesReceived.Load(), "received")
	cnt(descChunks, r.met.chunksSent.Load(), "sent")
	cnt(descChunks, r.met.chunksReceived.Load(), "received")
	cnt(descServed, r.met.exchangesServed.Load())
	g(descPeers, float64(ok), "ok")
	g(descPeers, float64(failing), "failing")
	g(descApplied, float64(applied))
	for i, name := range consistencyNames {
		cnt(descReads, r.met.reads[i].Load(), name)
	}
	cnt(descSaves, r.met.saves.Load())
	cnt(descPartial, r.met.partial.Load())
}

// conflicts counts the keys in conflict.
func (s *State) conflicts() int {
	n := 0
	for _, vs := range s.keys {
		if len(vs) > 1 && Conflict(vs) {
			n++
		}
	}
	return n
}
