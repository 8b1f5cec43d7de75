package journal

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gather registers c in a pedantic registry (which checks descriptions
// against what is collected) and returns the families by name.
func gather(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// TestCollector: after a known workload the journal's metrics say what
// happened: seqs as gauges, fsyncs as a counter, one fsync duration per
// fsync.
func TestCollector(t *testing.T) {
	j := open(t, Options{Fsync: FsyncAlways})
	const n = 5
	for range n {
		if _, err := j.Append(context.Background(), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	mfs := gather(t, j.Collector())
	want := map[string]struct {
		typ dto.MetricType
		val float64 // -1: not checked
	}{
		"semprop_journal_last_seq":               {dto.MetricType_GAUGE, n},
		"semprop_journal_durable_seq":            {dto.MetricType_GAUGE, n},
		"semprop_journal_first_seq":              {dto.MetricType_GAUGE, 1},
		"semprop_journal_segments":               {dto.MetricType_GAUGE, 1},
		"semprop_journal_no_space":               {dto.MetricType_GAUGE, 0},
		"semprop_journal_truncated_bytes":        {dto.MetricType_GAUGE, 0},
		"semprop_journal_fsyncs_total":           {dto.MetricType_COUNTER, float64(j.Stats().Fsyncs)},
		"semprop_journal_flushes_total":          {dto.MetricType_COUNTER, float64(j.Stats().Flushes)},
		"semprop_journal_written_bytes_total":    {dto.MetricType_COUNTER, float64(j.Stats().BytesWritten)},
		"semprop_journal_fsync_duration_seconds": {dto.MetricType_HISTOGRAM, float64(j.Stats().Fsyncs)},
	}
	if j.Stats().Fsyncs < n {
		t.Errorf("Fsyncs = %d after %d appends with FsyncAlways, want >= %d", j.Stats().Fsyncs, n, n)
	}
	for name, w := range want {
		mf, ok := mfs[name]
		if !ok {
			t.Errorf("no %s", name)
			continue
		}
		if mf.GetType() != w.typ {
			t.Errorf("%s is a %v, want %v", name, mf.GetType(), w.typ)
		}
		m := mf.Metric[0]
		var got float64
		switch w.typ {
		case dto.MetricType_GAUGE:
			got = m.GetGauge().GetValue()
		case dto.MetricType_COUNTER:
			got = m.GetCounter().GetValue()
		case dto.MetricType_HISTOGRAM:
			got = float64(m.GetHistogram().GetSampleCount())
			if m.GetHistogram().GetSampleSum() <= 0 {
				t.Errorf("%s sum = %v, want > 0", name, m.GetHistogram().GetSampleSum())
			}
		}
		if got != w.val {
			t.Errorf("%s = %v, want %v", name, got, w.val)
		}
	}
}
