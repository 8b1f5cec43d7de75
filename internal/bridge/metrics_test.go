package bridge

import (
	"reflect"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// setCounters gives every atomic.Uint64 field of st its own value (1000 +
// its index) and returns the values by field name.
func setCounters(st *counters) map[string]uint64 {
	out := map[string]uint64{}
	v := reflect.ValueOf(st).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Type() == reflect.TypeFor[atomic.Uint64]() {
			(*atomic.Uint64)(unsafe.Pointer(f.UnsafeAddr())).Store(uint64(1000 + i))
			out[v.Type().Field(i).Name] = uint64(1000 + i)
		}
	}
	return out
}

// TestStatsCopiesEveryCounter: each counter reaches its Stats field
// (RescanCovered used to stay 0).
func TestStatsCopiesEveryCounter(t *testing.T) {
	b, err := New(Options{Publisher: &recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	vals := setCounters(&b.st)
	st := reflect.ValueOf(b.Stats())
	for field, ctr := range map[string]string{
		"SeenKernel": "seenKernel", "SeenFUSE": "seenFUSE", "Shadows": "shadows", "Merged": "merged",
		"Absorbed": "absorbed", "Orphans": "orphans", "LateShadows": "late", "StallWaits": "stallWaits",
		"LateFUSE": "lateFUSE", "PassthroughMerged": "passthroughMerged", "Coalesced": "coalesced",
		"FUSEOnly": "fuseOnly", "KernelOnly": "kernelOnly", "DedupHits": "dedupHits",
		"RescanCovered": "rescanCovered", "Invalidations": "invalidations", "Emitted": "emitted",
		"Batches": "batches", "PublishErrors": "publishErrors", "Lost": "lost", "LossReports": "lossReports",
		"Invalid": "invalid", "QueueFull": "queueFull", "Closed": "closed",
	} {
		if got := st.FieldByName(field).Uint(); got != vals[ctr] {
			t.Errorf("Stats.%s = %d, want the counter %s = %d", field, got, ctr, vals[ctr])
		}
	}
}

// TestCollector: every monotone counter of the bridge is exported as a
// counter (none silently dropped), the now-values as gauges, and the
// correlation delay as a histogram.
func TestCollector(t *testing.T) {
	b, err := New(Options{Publisher: &recorder{}, Window: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	vals := setCounters(&b.st)
	// orphans and absorbed go down when a late FUSE op pairs a shadow: the
	// monotone orphansSeen and absorbedSeen are exported instead.
	delete(vals, "orphans")
	delete(vals, "absorbed")
	b.st.delay.ObserveDuration(3 * time.Millisecond)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(b.Collector("/tree"))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[uint64]string{}
	types := map[string]dto.MetricType{}
	for _, mf := range mfs {
		types[mf.GetName()] = mf.GetType()
		m := mf.Metric[0]
		if len(m.Label) != 1 || m.Label[0].GetName() != "tree" || m.Label[0].GetValue() != "/tree" {
			t.Errorf("%s labels %v, want tree=/tree", mf.GetName(), m.Label)
		}
		if mf.GetType() == dto.MetricType_COUNTER {
			exported[uint64(m.GetCounter().GetValue())] = mf.GetName()
		}
		if mf.GetName() == "semprop_bridge_window_seconds" && m.GetGauge().GetValue() != 0.03 {
			t.Errorf("window_seconds = %v, want 0.03", m.GetGauge().GetValue())
		}
		if mf.GetName() == "semprop_bridge_correlation_delay_seconds" && m.GetHistogram().GetSampleCount() != 1 {
			t.Errorf("correlation_delay_seconds count = %d, want 1", m.GetHistogram().GetSampleCount())
		}
	}
	for name, v := range vals {
		if _, ok := exported[v]; !ok {
			t.Errorf("counter %s (%d) is not exported as a counter", name, v)
		}
	}
	for name, want := range map[string]dto.MetricType{
		"semprop_bridge_window_seconds":            dto.MetricType_GAUGE,
		"semprop_bridge_pending":                   dto.MetricType_GAUGE,
		"semprop_bridge_queued":                    dto.MetricType_GAUGE,
		"semprop_bridge_correlation_delay_seconds": dto.MetricType_HISTOGRAM,
		"semprop_bridge_rescan_covered_total":      dto.MetricType_COUNTER,
	} {
		if got, ok := types[name]; !ok || got != want {
			t.Errorf("%s: %v (present %v), want %v", name, got, ok, want)
		}
	}
}
