package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestBucketOf(t *testing.T) {
	for _, tt := range []struct {
		ns   int64
		want int
	}{
		{0, 0}, {1, 0}, {1 << MinExp, 0}, {1<<MinExp + 1, 1}, {1 << (MinExp + 1), 1},
		{1<<(MinExp+1) + 1, 2}, {1 << MaxExp, MaxExp - MinExp}, {1<<MaxExp + 1, nBuckets - 1},
		{1 << 62, nBuckets - 1},
	} {
		if got := bucketOf(tt.ns); got != tt.want {
			t.Errorf("bucketOf(%d) = %d, want %d", tt.ns, got, tt.want)
		}
	}
}

func TestHistogramExport(t *testing.T) {
	var h Histogram
	h.ObserveDuration(500 * time.Nanosecond) // first bucket
	h.ObserveDuration(3 * time.Microsecond)  // le 4.096µs
	h.ObserveDuration(time.Minute)           // above every finite bound
	h.Observe(-5)                            // counts as 0
	desc := prometheus.NewDesc("semprop_test_seconds", "Test.", []string{"x"}, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) { ch <- h.Metric(desc, "a") }))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetType().String() != "HISTOGRAM" {
		t.Fatalf("gathered %v, want one histogram", mfs)
	}
	hist := mfs[0].Metric[0].Histogram
	if got := hist.GetSampleCount(); got != 4 {
		t.Errorf("count = %d, want 4", got)
	}
	if got, want := hist.GetSampleSum(), (time.Minute + 3500*time.Nanosecond).Seconds(); got != want {
		t.Errorf("sum = %v, want %v", got, want)
	}
	if got, want := len(hist.Bucket), MaxExp-MinExp+1; got != want {
		t.Fatalf("%d buckets, want %d (fixed layout)", got, want)
	}
	cum := map[float64]uint64{}
	for _, b := range hist.Bucket {
		cum[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	for bound, want := range map[float64]uint64{1.024e-6: 2, 2.048e-6: 2, 4.096e-6: 3, 17.179869184: 3} {
		if got := cum[bound]; got != want {
			t.Errorf("bucket le=%v = %d, want %d", bound, got, want)
		}
	}
	if len(Bounds()) != len(hist.Bucket) {
		t.Errorf("Bounds has %d, the export %d", len(Bounds()), len(hist.Bucket))
	}
}

func TestObserveAllocs(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(100, func() { h.Observe(12345) }); n != 0 {
		t.Errorf("Observe: %v allocs, want 0", n)
	}
}

func TestHelpers(t *testing.T) {
	c := prometheus.NewDesc("semprop_test_total", "Test.", nil, nil)
	g := prometheus.NewDesc("semprop_test_open", "Test.", nil, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collectorOf(Descs{c, g}, func(ch chan<- prometheus.Metric) {
		Counter(ch, c, 7)
		Gauge(ch, g, Bool(true))
	}))
	want := `
# HELP semprop_test_open Test.
# TYPE semprop_test_open gauge
semprop_test_open 1
# HELP semprop_test_total Test.
# TYPE semprop_test_total counter
semprop_test_total 7
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

type funcCollector struct {
	Descs
	collect func(chan<- prometheus.Metric)
}

func (f funcCollector) Collect(ch chan<- prometheus.Metric) { f.collect(ch) }

func collectorOf(d Descs, f func(chan<- prometheus.Metric)) prometheus.Collector {
	return funcCollector{d, f}
}

func TestQuantile(t *testing.T) {
	var h Histogram
	if q := h.Quantile(0.99); q != 0 {
		t.Errorf("Quantile of nothing = %v, want 0", q)
	}
	for range 98 {
		h.ObserveDuration(100 * time.Microsecond)
	}
	h.ObserveDuration(3 * time.Millisecond)
	h.ObserveDuration(3 * time.Millisecond)
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 131072}, {0.98, 131072}, {0.99, 4194304}, {1, 4194304}} {
		if got := h.Quantile(tc.q); got != tc.want {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
}
