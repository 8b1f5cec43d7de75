package propagate

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/metrics"
)

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

// series maps each series of a family (by its labels) to its value.
func series(mfs map[string]*dto.MetricFamily, name string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range mfs[name].GetMetric() {
		var parts []string
		for _, l := range m.Label {
			parts = append(parts, l.GetName()+"="+l.GetValue())
		}
		v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		out[strings.Join(parts, ",")] = v
	}
	return out
}

// TestSubscriptionLabelsStable: each anonymous subscription is labelled
// by its own id, so its series keep their values from scrape to scrape;
// a named one by its name.
func TestSubscriptionLabelsStable(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	const anon = 6
	named, err := e.m.Subscribe(SubscribeOptions{Name: "audit"})
	if err != nil {
		t.Fatal(err)
	}
	defer named.Close()
	subs := make([]*Subscription, anon)
	for i := range subs {
		if subs[i], err = e.m.Subscribe(SubscribeOptions{}); err != nil {
			t.Fatal(err)
		}
		defer subs[i].Close()
	}
	publishN(t, e.m, "app.x", anon)
	want := map[string]float64{"id=,subscription=audit": 0}
	for i, s := range subs {
		for range i { // subscription i takes i events: every series has its own value
			if _, err := s.Next(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		want[fmt.Sprintf("id=%d,subscription=", s.Stats().ID)] = float64(i)
	}
	for scrape := range 20 {
		got := series(gather(t, e.m.Collector()), "semprop_subscription_delivered_total")
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("scrape %d: delivered = %v, want %v", scrape, got, want)
		}
	}
	// Closing one leaves the others' labels alone.
	subs[1].Close()
	delete(want, fmt.Sprintf("id=%d,subscription=", subs[1].Stats().ID))
	got := series(gather(t, e.m.Collector()), "semprop_subscription_delivered_total")
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after a close: delivered = %v, want %v", got, want)
	}
}

// TestStreamSeries: an open Reader is a stream with its own series, gone
// when it is closed.
func TestStreamSeries(t *testing.T) {
	e := newEnv(t, journal.FsyncAlways)
	publishN(t, e.m, "app.x", 5)
	rd, err := e.m.Reader(1)
	if err != nil {
		t.Fatal(err)
	}
	var ev event.Event
	for range 3 {
		if ok, err := rd.TryNext(&ev); !ok || err != nil {
			t.Fatalf("TryNext = %v, %v", ok, err)
		}
	}
	mfs := gather(t, e.m.Collector())
	id := fmt.Sprintf("stream=%d", rd.id)
	if got := series(mfs, "semprop_streams")[""]; got != 1 {
		t.Errorf("streams = %v, want 1", got)
	}
	if got := series(mfs, "semprop_stream_events_total"); len(got) != 1 || got[id] != 3 {
		t.Errorf("stream_events_total = %v, want {%s: 3}", got, id)
	}
	if got := series(mfs, "semprop_stream_seq"); got[id] != 3 {
		t.Errorf("stream_seq = %v, want {%s: 3}", got, id)
	}
	rd.Close()
	mfs = gather(t, e.m.Collector())
	if got := series(mfs, "semprop_streams")[""]; got != 0 {
		t.Errorf("streams after Close = %v, want 0", got)
	}
	if got := series(mfs, "semprop_stream_events_total"); len(got) != 0 {
		t.Errorf("stream series after Close: %v", got)
	}
}

// TestPublishMetrics: the counter says how many events were published
// and the publish→durable histogram has one observation per call.
func TestPublishMetrics(t *testing.T) {
	e := newEnv(t, journal.FsyncAlways)
	sub, err := e.m.Subscribe(SubscribeOptions{Queue: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	publishN(t, e.m, "app.x", 4)
	batch := []*event.Event{{Type: "app.y"}, {Type: "app.y"}, {Type: "app.y"}}
	if err := e.m.PublishBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	for range 7 * latencySample { // enough deliveries for timed ones
		if _, err := e.m.Publish(context.Background(), &event.Event{Type: "app.z"}); err != nil {
			t.Fatal(err)
		}
		if _, err := sub.Next(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	mfs := gather(t, e.m.Collector())
	wantEvents := 4 + 3 + 7*latencySample
	if got := series(mfs, "semprop_published_events_total")[""]; got != float64(wantEvents) {
		t.Errorf("published_events_total = %v, want %d", got, wantEvents)
	}
	if got := series(mfs, "semprop_publish_duration_seconds")[""]; got != float64(4+1+7*latencySample) {
		t.Errorf("publish_duration_seconds count = %v, want %d (one per call)", got, 4+1+7*latencySample)
	}
	for _, name := range []string{"semprop_publish_duration_seconds", "semprop_delivery_latency_seconds"} {
		mf := mfs[name]
		if mf.GetType() != dto.MetricType_HISTOGRAM {
			t.Fatalf("%s is a %v, want a histogram", name, mf.GetType())
		}
		h := mf.Metric[0].GetHistogram()
		if got, want := len(h.Bucket), len(metrics.Bounds()); got != want {
			t.Errorf("%s has %d buckets, want the fixed %d", name, got, want)
		}
		if h.GetSampleCount() == 0 || h.GetSampleSum() <= 0 {
			t.Errorf("%s: count %d, sum %v, want observations", name, h.GetSampleCount(), h.GetSampleSum())
		}
	}
}

func TestFixedBuckets(t *testing.T) {
	var h Histogram
	for _, ns := range []int64{0, 100, 1023, 1024, 1500, 5000, 1 << 40} {
		h.Observe(ns)
	}
	n, _, b := fixedBuckets(h.Snapshot())
	if n != 7 {
		t.Errorf("count = %d, want 7", n)
	}
	// le 1.024µs: 0, 100, 1023 (1024 exactly lands in the next bound).
	for bound, want := range map[float64]uint64{1.024e-6: 3, 2.048e-6: 5, 8.192e-6: 6, 17.179869184: 6} {
		if got := b[bound]; got != want {
			t.Errorf("le=%v: %d, want %d", bound, got, want)
		}
	}
}
