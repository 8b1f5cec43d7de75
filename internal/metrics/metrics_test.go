package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeStats struct {
	Pending   int
	Merged    uint64
	ByKind    map[string]uint64
	Mode      string // ignored: not numeric
	FsyncNano int64
}

func TestStatsCollector(t *testing.T) {
	st := fakeStats{Pending: 3, Merged: 7, ByKind: map[string]uint64{"fs.write": 2}, FsyncNano: 5}
	c := NewStatsCollector("bridge", prometheus.Labels{"mount": "/m"}, func() any { return &st }, "Pending")
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP semprop_bridge_by_kind_total bridge ByKind
# TYPE semprop_bridge_by_kind_total counter
semprop_bridge_by_kind_total{key="fs.write",mount="/m"} 2
# HELP semprop_bridge_fsync_nano_total bridge FsyncNano
# TYPE semprop_bridge_fsync_nano_total counter
semprop_bridge_fsync_nano_total{mount="/m"} 5
# HELP semprop_bridge_merged_total bridge Merged
# TYPE semprop_bridge_merged_total counter
semprop_bridge_merged_total{mount="/m"} 7
# HELP semprop_bridge_pending bridge Pending
# TYPE semprop_bridge_pending gauge
semprop_bridge_pending{mount="/m"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	st.Merged = 9 // read at scrape time
	if got := testutil.ToFloat64(prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		for m := range collectOne(c, "semprop_bridge_merged_total") {
			ch <- m
		}
	})); got != 9 {
		t.Errorf("merged after change = %v, want 9", got)
	}
}

func collectOne(c prometheus.Collector, name string) <-chan prometheus.Metric {
	all := make(chan prometheus.Metric, 64)
	c.Collect(all)
	close(all)
	out := make(chan prometheus.Metric, 1)
	for m := range all {
		if strings.Contains(m.Desc().String(), `"`+name+`"`) {
			out <- m
		}
	}
	close(out)
	return out
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{"FsyncNanos": "fsync_nanos", "HandleHits": "handle_hits", "DroppedOutside": "dropped_outside", "OpsTotal": "ops_total", "PublishErrors": "publish_errors", "FUSEOnly": "fuse_only"} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStatsCollectorNameCollision(t *testing.T) {
	type st struct {
		Ops      map[string]uint64
		OpsTotal uint64
	}
	c := NewStatsCollector("kernel", nil, func() any { return st{Ops: map[string]uint64{"fs.write": 1}, OpsTotal: 1} })
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("gather with a map and a scalar of one name: %v", err)
	}
}
