package journal

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/metrics"
)

var (
	descSegments   = prometheus.NewDesc("semprop_journal_segments", "Segment files retained.", nil, nil)
	descBytes      = prometheus.NewDesc("semprop_journal_bytes", "Bytes of records in the retained segments.", nil, nil)
	descFirstSeq   = prometheus.NewDesc("semprop_journal_first_seq", "Oldest retained seq (last seq + 1 when the journal is empty).", nil, nil)
	descLastSeq    = prometheus.NewDesc("semprop_journal_last_seq", "Last seq assigned.", nil, nil)
	descDurableSeq = prometheus.NewDesc("semprop_journal_durable_seq", "Highest seq that is durable under the fsync policy.", nil, nil)
	descNoSpace    = prometheus.NewDesc("semprop_journal_no_space", "1 while writes are refused because the disk is full, else 0.", nil, nil)
	descTruncated  = prometheus.NewDesc("semprop_journal_truncated_bytes", "Bytes of torn tail cut when the journal was opened.", nil, nil)
	descFsyncs     = prometheus.NewDesc("semprop_journal_fsyncs_total", "fdatasync calls made.", nil, nil)
	descFlushes    = prometheus.NewDesc("semprop_journal_flushes_total", "Batches of records written to the operating system.", nil, nil)
	descWriterFl   = prometheus.NewDesc("semprop_journal_writer_flushes_total", "Batches written by a publisher itself (fsync never or interval) rather than the flusher goroutine.", nil, nil)
	descWritten    = prometheus.NewDesc("semprop_journal_written_bytes_total", "Bytes written to the operating system.", nil, nil)
	descDeleted    = prometheus.NewDesc("semprop_journal_segments_deleted_total", "Segments deleted by retention.", nil, nil)
	descWaits      = prometheus.NewDesc("semprop_journal_backpressure_waits_total", "Times a writer waited for the write buffer to drain.", nil, nil)
	descEpisodes   = prometheus.NewDesc("semprop_journal_no_space_episodes_total", "Times the disk was found full.", nil, nil)
	descRetries    = prometheus.NewDesc("semprop_journal_no_space_retries_total", "Attempts to write again while the disk was full.", nil, nil)
	descFsyncTime  = prometheus.NewDesc("semprop_journal_fsync_duration_seconds", "Duration of each fdatasync of a segment.", nil, nil)

	journalDescs = metrics.Descs{descSegments, descBytes, descFirstSeq, descLastSeq, descDurableSeq, descNoSpace,
		descTruncated, descFsyncs, descFlushes, descWriterFl, descWritten, descDeleted, descWaits, descEpisodes, descRetries, descFsyncTime}
)

// Collector returns a Prometheus collector of the journal: its extent and
// seqs (gauges), its write and fsync activity (counters) and the fsync
// duration histogram. Values are read at scrape time. Register it once.
func (j *Journal) Collector() prometheus.Collector { return (*collector)(j) }

type collector Journal

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) { journalDescs.Describe(ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	j := (*Journal)(c)
	s := j.Stats()
	metrics.Gauge(ch, descSegments, float64(s.Segments))
	metrics.Gauge(ch, descBytes, float64(s.Bytes))
	metrics.Gauge(ch, descFirstSeq, float64(s.FirstSeq))
	metrics.Gauge(ch, descLastSeq, float64(s.LastSeq))
	metrics.Gauge(ch, descDurableSeq, float64(s.DurableSeq))
	metrics.Gauge(ch, descNoSpace, metrics.Bool(s.NoSpace))
	metrics.Gauge(ch, descTruncated, float64(s.Truncated))
	metrics.Counter(ch, descFsyncs, s.Fsyncs)
	metrics.Counter(ch, descFlushes, s.Flushes)
	metrics.Counter(ch, descWriterFl, s.WriterFlushes)
	metrics.Counter(ch, descWritten, s.BytesWritten)
	metrics.Counter(ch, descDeleted, s.SegmentsDeleted)
	metrics.Counter(ch, descWaits, s.BackpressureWaits)
	metrics.Counter(ch, descEpisodes, s.NoSpaceEpisodes)
	metrics.Counter(ch, descRetries, s.NoSpaceRetries)
	ch <- j.fsyncTime.Metric(descFsyncTime)
}
