//go:build linux

package fanotify

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/semprop/semprop/internal/capture"
)

// TestCollector: ops are exported per kind (every kind present) and agree
// with what the sink received; gauges and counters have their types.
func TestCollector(t *testing.T) {
	root := t.TempDir()
	w, rec := startWatcher(t, Options{Root: root})
	for _, name := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "two creates", func() bool {
		n := 0
		for _, op := range rec.snapshot() {
			if op.Kind == capture.KindCreate {
				n++
			}
		}
		return n == 2
	})
	// The sink and the counters are read one after the other while late
	// ops (the writes' close) may still come: compare until they agree.
	var want, got map[string]float64
	types := map[string]dto.MetricType{}
	for deadline := time.Now().Add(5 * time.Second); ; {
		want = map[string]float64{}
		for _, k := range opKinds {
			want[k.String()] = 0
		}
		for _, op := range rec.snapshot() {
			want[op.Kind.String()]++
		}
		got = gatherOps(t, w, types)
		if fmt.Sprint(got) == fmt.Sprint(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for k, n := range want {
		if v, ok := got[k]; !ok || v != n {
			t.Errorf("semprop_kernel_ops_total{kind=%q} = %v (present %v), want %v (the sink's count)", k, v, ok, n)
		}
	}
	for name, typ := range map[string]dto.MetricType{
		"semprop_kernel_ops_total":         dto.MetricType_COUNTER,
		"semprop_kernel_events_read_total": dto.MetricType_COUNTER,
		"semprop_kernel_watches":           dto.MetricType_GAUGE,
		"semprop_kernel_mode":              dto.MetricType_GAUGE,
	} {
		if got, ok := types[name]; !ok || got != typ {
			t.Errorf("%s: %v (present %v), want %v", name, got, ok, typ)
		}
	}
}

// gatherOps collects w and returns semprop_kernel_ops_total by kind,
// noting every family's type in types.
func gatherOps(t *testing.T, w *Watcher, types map[string]dto.MetricType) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(w.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		types[mf.GetName()] = mf.GetType()
		if mf.GetName() != "semprop_kernel_ops_total" {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "kind" {
					got[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return got
}
