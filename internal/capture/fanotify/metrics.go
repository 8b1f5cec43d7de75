package fanotify

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/capture"
	"github.com/semprop/semprop/internal/metrics"
)

// watcherCounter is one counter of the watcher's collector.
type watcherCounter struct {
	desc *prometheus.Desc
	val  func(*Stats) uint64
}

func kernelDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("semprop_kernel_"+name, help, append([]string{"root"}, labels...), nil)
}

var watcherCounters = []watcherCounter{
	{kernelDesc("events_read_total", "Kernel records read (fanotify or inotify events)."), func(s *Stats) uint64 { return s.EventsRead }},
	{kernelDesc("reads_total", "read(2) calls that returned data."), func(s *Stats) uint64 { return s.Reads }},
	{kernelDesc("overflows_total", "Kernel queue overflows seen."), func(s *Stats) uint64 { return s.Overflows }},
	{kernelDesc("lost_records_total", "Kernel records known lost to errors (reported in fs.overflow events)."), func(s *Stats) uint64 { return s.LostRecords }},
	{kernelDesc("rescans_total", "Rescans run after a loss."), func(s *Stats) uint64 { return s.Rescans }},
	{kernelDesc("rescan_found_total", "Changes the rescans found."), func(s *Stats) uint64 { return s.RescanFound }},
	{kernelDesc("rescan_errors_total", "Parts of the tree a rescan could not read (another rescan follows)."), func(s *Stats) uint64 { return s.RescanErrors }},
	{kernelDesc("drained_bytes_total", "Bytes read from the kernel queue during rescans, processed after them."), func(s *Stats) uint64 { return s.Drained }},
	{kernelDesc("handle_hits_total", "Directory handle to path cache hits."), func(s *Stats) uint64 { return s.HandleHits }},
	{kernelDesc("handle_misses_total", "Directory handle to path cache misses."), func(s *Stats) uint64 { return s.HandleMisses }},
	{kernelDesc("handle_stale_total", "Handles that could no longer be opened (deleted directory)."), func(s *Stats) uint64 { return s.HandleStale }},
	{kernelDesc("handle_errors_total", "Handles that could not be resolved for another reason (their records are reported lost)."), func(s *Stats) uint64 { return s.HandleErrors }},
	{kernelDesc("reserve_used_total", "Opens that succeeded only with the reader's spare descriptor."), func(s *Stats) uint64 { return s.ReserveUsed }},
	{kernelDesc("cache_resets_total", "Times the handle cache outgrew its bound and was cleared."), func(s *Stats) uint64 { return s.CacheResets }},
	{kernelDesc("proc_hits_total", "Process (comm, exe) cache hits."), func(s *Stats) uint64 { return s.ProcHits }},
	{kernelDesc("proc_misses_total", "Process cache misses and pid reuse refreshes."), func(s *Stats) uint64 { return s.ProcMisses }},
	{kernelDesc("dropped_outside_total", "Events on the file system but outside the watched root."), func(s *Stats) uint64 { return s.DroppedOutside }},
	{kernelDesc("unresolved_total", "Events whose directory could no longer be resolved (dropped)."), func(s *Stats) uint64 { return s.Unresolved }},
	{kernelDesc("nameless_total", "Records with no directory and name: nothing to report."), func(s *Stats) uint64 { return s.Nameless }},
	{kernelDesc("suppressed_total", "Ops dropped as duplicates of what the index already holds."), func(s *Stats) uint64 { return s.Suppressed }},
	{kernelDesc("parse_errors_total", "Malformed buffers or records."), func(s *Stats) uint64 { return s.ParseErrors }},
}

var (
	descKernelOps    = kernelDesc("ops_total", "Ops emitted, by event type.", "kind")
	descKernelLosses = kernelDesc("losses_total", "fs.overflow ops emitted, by reason.", "reason")
	descWatches      = kernelDesc("watches", "Directories watched (inotify mode; 0 with fanotify).")
	descKernelMode   = kernelDesc("mode", "1 for the mode in use: fanotify or inotify.", "mode")
)

// opKinds are the kinds a boundary can emit, each exported even at 0.
var opKinds = func() []capture.Kind {
	var ks []capture.Kind
	for k := capture.KindCreate; k <= capture.KindRescan; k++ {
		ks = append(ks, k)
	}
	return ks
}()

// Collector returns a Prometheus collector of the watcher, labelled
// root=ROOT: its counters (ops by kind, losses by reason, reads, caches,
// drops) and the watches and mode gauges. Values are read at scrape time.
// Register it once per watcher.
func (w *Watcher) Collector() prometheus.Collector { return (*collector)(w) }

type collector Watcher

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, wc := range watcherCounters {
		ch <- wc.desc
	}
	metrics.Descs{descKernelOps, descKernelLosses, descWatches, descKernelMode}.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	w := (*Watcher)(c)
	s := w.Stats()
	root := w.Root()
	for _, wc := range watcherCounters {
		metrics.Counter(ch, wc.desc, wc.val(&s), root)
	}
	for _, k := range opKinds {
		metrics.Counter(ch, descKernelOps, s.Ops[k.String()], root, k.String())
	}
	for _, r := range slices.Sorted(maps.Keys(s.Losses)) {
		metrics.Counter(ch, descKernelLosses, s.Losses[r], root, r)
	}
	metrics.Gauge(ch, descWatches, float64(s.Watches), root)
	if s.Mode != "" {
		metrics.Gauge(ch, descKernelMode, 1, root, s.Mode)
	}
}
