package fusefs

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/capture"
	"github.com/semprop/semprop/internal/metrics"
)

func fuseDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("semprop_fuse_"+name, help, append([]string{"mount"}, labels...), nil)
}

var (
	descOps             = fuseDesc("ops_total", "Ops emitted by the FUSE boundary, by event type.", "kind")
	descWriteCalls      = fuseDesc("write_calls_total", "FUSE WRITE requests served.")
	descWritesCoalesced = fuseDesc("writes_coalesced_total", "WRITE requests folded into an already pending write op.")
	descWrittenBytes    = fuseDesc("written_bytes_total", "Bytes written through the FUSE server (not passthrough).")
	descPTWrites        = fuseDesc("passthrough_writes_total", "Write ops detected by stat comparison after passthrough writes.")
	descUnknownCaller   = fuseDesc("unknown_caller_total", "Ops whose process could not be resolved.")
	descInvQueued       = fuseDesc("invalidations_queued_total", "Kernel cache invalidations queued.")
	descInvSent         = fuseDesc("invalidations_sent_total", "Kernel cache invalidations the kernel accepted.")
	descInvFailed       = fuseDesc("invalidations_failed_total", "Kernel cache invalidations the kernel refused (ENOENT: not cached, harmless).")
	descInvSkipped      = fuseDesc("invalidations_skipped_total", "Invalidations not sent: the path is not known to the kernel, nothing is cached.")
	descInvDropped      = fuseDesc("invalidations_dropped_total", "Invalidations dropped because their queue was full.")
	descPassthrough     = fuseDesc("passthrough", "1 if FUSE passthrough of file data is in effect, else 0.")

	fuseDescs = metrics.Descs{descOps, descWriteCalls, descWritesCoalesced, descWrittenBytes, descPTWrites,
		descUnknownCaller, descInvQueued, descInvSent, descInvFailed, descInvSkipped, descInvDropped, descPassthrough}
)

// Collector returns a Prometheus collector of the mount, labelled
// mount=MOUNTPOINT: ops by kind (every kind, 0 included), write and
// invalidation counters, and the passthrough gauge. Values are read at
// scrape time. Register it once per mount.
func (f *FS) Collector() prometheus.Collector { return (*collector)(f) }

type collector FS

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) { fuseDescs.Describe(ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	f := (*FS)(c)
	s := f.Stats()
	mnt := f.Mountpoint()
	for k := capture.KindCreate; int(k) < len(s.Ops); k++ {
		metrics.Counter(ch, descOps, s.Ops[k], mnt, k.String())
	}
	metrics.Counter(ch, descWriteCalls, s.WriteCalls, mnt)
	metrics.Counter(ch, descWritesCoalesced, s.WritesCoalesced, mnt)
	metrics.Counter(ch, descWrittenBytes, s.BytesWritten, mnt)
	metrics.Counter(ch, descPTWrites, s.PassthroughWrites, mnt)
	metrics.Counter(ch, descUnknownCaller, s.UnknownCaller, mnt)
	metrics.Counter(ch, descInvQueued, s.InvalidationsQueued, mnt)
	metrics.Counter(ch, descInvSent, s.InvalidationsSent, mnt)
	metrics.Counter(ch, descInvFailed, s.InvalidationsFailed, mnt)
	metrics.Counter(ch, descInvSkipped, s.InvalidationsSkipped, mnt)
	metrics.Counter(ch, descInvDropped, s.InvalidationsDropped, mnt)
	metrics.Gauge(ch, descPassthrough, metrics.Bool(f.Passthrough()), mnt)
}
