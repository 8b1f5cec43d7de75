package procinfo

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/metrics"
)

func procDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("semprop_procinfo_"+name, help, nil, nil)
}

var cacheCounters = []struct {
	desc *prometheus.Desc
	val  func(*Stats) uint64
}{
	{procDesc("events_total", "Process connector events applied."), func(s *Stats) uint64 { return s.Events }},
	{procDesc("hits_total", "Lookups answered from the cache."), func(s *Stats) uint64 { return s.Hits }},
	{procDesc("proc_reads_total", "Lookups answered by reading /proc (processes older than the cache)."), func(s *Stats) uint64 { return s.ProcReads }},
	{procDesc("unresolved_total", "Lookups with no identity that is certainly the actor's (pid only)."), func(s *Stats) uint64 { return s.Unresolved }},
	{procDesc("exec_late_total", "Execs whose process was gone before /proc could be read."), func(s *Stats) uint64 { return s.ExecLate }},
	{procDesc("exec_records_total", "Of the late execs, those whose identity came from the exec records."), func(s *Stats) uint64 { return s.ExecRecords }},
	{procDesc("lost_total", "Times the kernel dropped process connector messages (the cache started afresh)."), func(s *Stats) uint64 { return s.Lost }},
	{procDesc("evicted_total", "Processes forgotten because the cache was full."), func(s *Stats) uint64 { return s.Evicted }},
	{procDesc("malformed_total", "Process connector datagrams that did not parse."), func(s *Stats) uint64 { return s.Malformed }},
	{procDesc("slow_catchups_total", "Lookups that stopped waiting for the listener to catch up."), func(s *Stats) uint64 { return s.SlowCatchUps }},
}

var descProcesses = procDesc("processes", "Processes the cache holds (alive, and exited within the retention).")

// Collector returns a Prometheus collector of the cache's counters and
// size, read at scrape time. Register it once per cache.
func (c *Cache) Collector() prometheus.Collector { return (*collector)(c) }

type collector Cache

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, cc := range cacheCounters {
		ch <- cc.desc
	}
	ch <- descProcesses
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	cache := (*Cache)(c)
	s := cache.Stats()
	for _, cc := range cacheCounters {
		metrics.Counter(ch, cc.desc, cc.val(&s))
	}
	metrics.Gauge(ch, descProcesses, float64(cache.Len()))
}
