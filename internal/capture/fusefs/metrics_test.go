//go:build linux

package fusefs

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/semprop/semprop/internal/capture"
)

// TestCollector: the per-kind op counts (once dropped by the metrics
// layer) are exported as counters with a kind label, every kind present,
// and agree with the ops the sink received.
func TestCollector(t *testing.T) {
	requireFUSE(t)
	rec := &recorder{}
	f := mountT(t, Options{Sink: rec})
	for _, name := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(f.Mountpoint(), name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(f.Mountpoint(), "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	ops := rec.waitQuiet(5, 10*time.Second)
	want := map[string]float64{}
	for k := capture.KindCreate; k <= capture.KindSymlink; k++ {
		want[k.String()] = 0
	}
	for _, op := range ops {
		want[op.Kind.String()]++
	}
	if want["fs.create"] != 2 || want["fs.mkdir"] != 1 {
		t.Fatalf("the sink got %v, want 2 fs.create and 1 fs.mkdir", want)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(f.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "semprop_fuse_ops_total" {
			continue
		}
		if mf.GetType() != dto.MetricType_COUNTER {
			t.Errorf("semprop_fuse_ops_total is a %v, want a counter", mf.GetType())
		}
		for _, m := range mf.Metric {
			var kind, mount string
			for _, l := range m.Label {
				switch l.GetName() {
				case "kind":
					kind = l.GetValue()
				case "mount":
					mount = l.GetValue()
				}
			}
			if mount != f.Mountpoint() {
				t.Errorf("mount label %q, want %q", mount, f.Mountpoint())
			}
			got[kind] = m.GetCounter().GetValue()
		}
	}
	for k, n := range want {
		if v, ok := got[k]; !ok || v != n {
			t.Errorf("semprop_fuse_ops_total{kind=%q} = %v (present %v), want %v", k, v, ok, n)
		}
	}
}
