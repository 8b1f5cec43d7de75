package enrich

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestCollector: the skip counters reach Prometheus with the tree label.
func TestCollector(t *testing.T) {
	root := t.TempDir()
	p := newTestPublisher(t, Options{Next: &recorder{}, Root: root, Ignore: []string{"*.o"}})
	publish(t, p, writeEvent(filepath.Join(root, "gone")), writeEvent(filepath.Join(root, "x.o")))
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(p.Collector("/t")); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP semprop_enrich_gone_total Events flagged enrich=gone: the file was gone before it could be read.
# TYPE semprop_enrich_gone_total counter
semprop_enrich_gone_total{tree="/t"} 1
# HELP semprop_enrich_ignored_total Events dropped by ignore rules before they were journaled.
# TYPE semprop_enrich_ignored_total counter
semprop_enrich_ignored_total{tree="/t"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "semprop_enrich_gone_total", "semprop_enrich_ignored_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != len(counterDescs)+3 {
		t.Errorf("GatherAndCount = %d, %v; want %d", n, err, len(counterDescs)+3)
	}
}
