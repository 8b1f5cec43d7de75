package daemon

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/semprop/semprop/internal/config"
	"github.com/semprop/semprop/internal/propagate"
)

// TestMetricsTellTheTruth runs a known workload through a daemon that
// watches a tree (and, as root with /dev/fuse, mounts one), scrapes
// /metrics twice, parses it with the Prometheus text parser and checks
// every family's name and type, that no counter goes down, that the
// values are the ones the workload implies, and that per-subscription,
// per-stream and per-consumer series keep their labels between scrapes.
func TestMetricsTellTheTruth(t *testing.T) {
	const (
		nPublish = 5 // events published over HTTP
		nFiles   = 3 // files created in each captured tree
	)
	c := defaults(t)
	watch := t.TempDir()
	c.Watch = config.Trees(watch)
	var mnt string
	fuse := os.Geteuid() == 0 && fileExists("/dev/fuse")
	if fuse {
		backing := t.TempDir()
		mnt = filepath.Join(t.TempDir(), "mnt")
		c.Mount = config.Trees(backing + ":" + mnt)
	} else {
		t.Log("not root or no /dev/fuse: the FUSE part of the workload is skipped")
	}
	d, url := startT(t, c)
	cfg := &d.cfg
	root := cfg.Watches[0].Root

	// Live subscriptions: one named, one anonymous (nothing in the daemon
	// subscribes live by itself).
	named, err := d.manager.Subscribe(propagate.SubscribeOptions{Name: "live-named"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(named.Close)
	anon, err := d.manager.Subscribe(propagate.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(anon.Close)

	// A durable consumer (named) and an SSE stream (anonymous).
	post(t, url+"/v1/subscriptions", "application/json", `{"name":"audit"}`, http.StatusCreated)
	sctx, stopStream := context.WithCancel(context.Background())
	t.Cleanup(stopStream)
	seen := make(chan int, 64)
	req, _ := http.NewRequestWithContext(sctx, "GET", url+"/v1/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	go func() {
		n := 0
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "id: ") {
				n++
				seen <- n
			}
		}
	}()

	for i := range nPublish {
		post(t, url+"/v1/events", "application/cloudevents+json",
			fmt.Sprintf(`{"specversion":"1.0","id":"m%d","source":"/t","type":"app.metrics"}`, i), http.StatusOK)
	}
	for i := range nFiles {
		if err := os.WriteFile(filepath.Join(watch, fmt.Sprintf("w%d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if fuse {
			if err := os.WriteFile(filepath.Join(mnt, fmt.Sprintf("f%d", i)), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	wantEvents := nPublish + nFiles
	if fuse {
		wantEvents += nFiles
	}
	// The stream and both live subscriptions see the HTTP events.
	waitFor(t, "the SSE stream to see the published events", func() bool {
		for {
			select {
			case n := <-seen:
				if n >= nPublish {
					return true
				}
			default:
				return false
			}
		}
	})
	for _, s := range []*propagate.Subscription{named, anon} {
		for range nPublish {
			ectx, c := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := s.Next(ectx)
			c()
			if err != nil {
				t.Fatalf("live subscription: %v", err)
			}
		}
	}
	post(t, url+"/v1/subscriptions/audit/fetch?max=100&wait=1s", "application/json", "", http.StatusOK)

	// Wait for the capture trees to publish what the files made.
	var first map[string]*dto.MetricFamily
	waitFor(t, "the file events to be published and durable", func() bool {
		first = scrape(t, url)
		last := value(first, "semprop_journal_last_seq", nil)
		return last >= float64(wantEvents) && value(first, "semprop_journal_durable_seq", nil) == last
	})
	waitFor(t, "the boundaries to count the files", func() bool {
		first = scrape(t, url)
		ok := value(first, "semprop_kernel_ops_total", labels{"root": root, "kind": "fs.create"}) >= nFiles
		if fuse {
			ok = ok && value(first, "semprop_fuse_ops_total", labels{"kind": "fs.create"}) >= nFiles
		}
		// Every event the bridges released is published (none in flight).
		return ok && value(first, "semprop_bridge_correlation_delay_seconds", nil) == value(first, "semprop_bridge_emitted_total", nil) &&
			value(first, "semprop_bridge_pending", nil) == 0
	})
	time.Sleep(50 * time.Millisecond)
	second := scrape(t, url)

	for _, mfs := range []map[string]*dto.MetricFamily{first, second} {
		checkFamilies(t, mfs)
	}
	checkCountersGrow(t, first, second)

	// Types of the metrics this workload must produce.
	want := map[string]dto.MetricType{
		"semprop_journal_last_seq":                 dto.MetricType_GAUGE,
		"semprop_journal_durable_seq":              dto.MetricType_GAUGE,
		"semprop_journal_first_seq":                dto.MetricType_GAUGE,
		"semprop_journal_segments":                 dto.MetricType_GAUGE,
		"semprop_journal_bytes":                    dto.MetricType_GAUGE,
		"semprop_journal_fsyncs_total":             dto.MetricType_COUNTER,
		"semprop_journal_fsync_duration_seconds":   dto.MetricType_HISTOGRAM,
		"semprop_published_events_total":           dto.MetricType_COUNTER,
		"semprop_publish_duration_seconds":         dto.MetricType_HISTOGRAM,
		"semprop_delivery_latency_seconds":         dto.MetricType_HISTOGRAM,
		"semprop_subscriptions":                    dto.MetricType_GAUGE,
		"semprop_subscription_delivered_total":     dto.MetricType_COUNTER,
		"semprop_subscription_matched_total":       dto.MetricType_COUNTER,
		"semprop_subscription_dropped_total":       dto.MetricType_COUNTER,
		"semprop_subscription_queue_depth":         dto.MetricType_GAUGE,
		"semprop_streams":                          dto.MetricType_GAUGE,
		"semprop_stream_events_total":              dto.MetricType_COUNTER,
		"semprop_stream_seq":                       dto.MetricType_GAUGE,
		"semprop_consumer_events_total":            dto.MetricType_COUNTER,
		"semprop_consumer_pending":                 dto.MetricType_GAUGE,
		"semprop_bridge_window_seconds":            dto.MetricType_GAUGE,
		"semprop_bridge_pending":                   dto.MetricType_GAUGE,
		"semprop_bridge_queued":                    dto.MetricType_GAUGE,
		"semprop_bridge_emitted_total":             dto.MetricType_COUNTER,
		"semprop_bridge_rescan_covered_total":      dto.MetricType_COUNTER,
		"semprop_bridge_orphans_total":             dto.MetricType_COUNTER,
		"semprop_bridge_correlation_delay_seconds": dto.MetricType_HISTOGRAM,
		"semprop_kernel_ops_total":                 dto.MetricType_COUNTER,
		"semprop_kernel_events_read_total":         dto.MetricType_COUNTER,
		"semprop_http_requests_total":              dto.MetricType_COUNTER,
		"semprop_http_request_duration_seconds":    dto.MetricType_HISTOGRAM,
	}
	if fuse {
		want["semprop_fuse_ops_total"] = dto.MetricType_COUNTER
		want["semprop_fuse_passthrough"] = dto.MetricType_GAUGE
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		mf, ok := second[name]
		switch {
		case !ok:
			t.Errorf("no family %s", name)
		case mf.GetType() != want[name]:
			t.Errorf("%s is a %v, want a %v", name, mf.GetType(), want[name])
		}
	}
	for _, name := range []string{"semprop_bridge_window_total", "semprop_bridge_pending_total"} {
		if _, ok := second[name]; ok {
			t.Errorf("family %s exists: a gauge exported as a counter", name)
		}
	}

	// Values the workload implies.
	last := value(second, "semprop_journal_last_seq", nil)
	if got := value(second, "semprop_published_events_total", nil); got != last {
		t.Errorf("published_events_total = %v, want the journal's last seq %v (one publisher, no cluster)", got, last)
	}
	if last < float64(wantEvents) {
		t.Errorf("journal last seq = %v, want >= %d", last, wantEvents)
	}
	if got := value(second, "semprop_journal_durable_seq", nil); got != last {
		t.Errorf("durable_seq = %v, want last_seq %v (fsync always, all publishes returned)", got, last)
	}
	fsyncs := value(second, "semprop_journal_fsyncs_total", nil)
	if got := value(second, "semprop_journal_fsync_duration_seconds", nil); got != fsyncs || fsyncs < 1 {
		t.Errorf("fsync_duration_seconds count = %v, fsyncs_total = %v: want equal and >= 1", got, fsyncs)
	}
	if got := value(second, "semprop_publish_duration_seconds", nil); got < nPublish || got > last {
		t.Errorf("publish_duration_seconds count = %v, want one per publish call: between %d and %v", got, nPublish, last)
	}
	if got := value(second, "semprop_http_requests_total", labels{"route": "POST /v1/events", "code": "200"}); got != nPublish {
		t.Errorf("http_requests_total{POST /v1/events, 200} = %v, want %d", got, nPublish)
	}
	if got := value(second, "semprop_http_request_duration_seconds", labels{"route": "POST /v1/events"}); got != nPublish {
		t.Errorf("http_request_duration_seconds{POST /v1/events} count = %v, want %d", got, nPublish)
	}
	treeEmitted := value(second, "semprop_bridge_emitted_total", labels{"tree": root})
	if treeEmitted < nFiles {
		t.Errorf("bridge_emitted_total{tree=%s} = %v, want >= %d", root, treeEmitted, nFiles)
	}
	if got := value(second, "semprop_bridge_correlation_delay_seconds", labels{"tree": root}); got != treeEmitted {
		t.Errorf("correlation_delay_seconds{tree=%s} count = %v, want one per emitted event (%v)", root, got, treeEmitted)
	}
	if got := value(second, "semprop_bridge_window_seconds", labels{"tree": root}); got != cfg.BridgeWindow.Seconds() {
		t.Errorf("bridge_window_seconds = %v, want the configured %v", got, cfg.BridgeWindow.Seconds())
	}
	if got := value(second, "semprop_streams", nil); got != 2 {
		t.Errorf("semprop_streams = %v, want 2 (the SSE stream and the analytics engine's reader)", got)
	}
	if fuse {
		if got := value(second, "semprop_fuse_ops_total", labels{"kind": "fs.create"}); got < nFiles {
			t.Errorf("fuse_ops_total{kind=fs.create} = %v, want >= %d", got, nFiles)
		}
		// The second tree's series are there beside the first's: each
		// kind of per-tree collector is registered once for all trees.
		m := cfg.Mounts[0]
		if got := value(second, "semprop_bridge_emitted_total", labels{"tree": m.Mountpoint}); got < nFiles {
			t.Errorf("bridge_emitted_total{tree=%s} = %v, want >= %d", m.Mountpoint, got, nFiles)
		}
		if got := value(second, "semprop_enrich_events_total", labels{"tree": m.Mountpoint}); got < nFiles {
			t.Errorf("enrich_events_total{tree=%s} = %v, want >= %d", m.Mountpoint, got, nFiles)
		}
		if got := value(second, "semprop_enrich_events_total", labels{"tree": root}); got < nFiles {
			t.Errorf("enrich_events_total{tree=%s} = %v, want >= %d", root, got, nFiles)
		}
		if got := labelSets(second, "semprop_kernel_ops_total"); !slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, m.Backing) }) {
			t.Errorf("kernel_ops_total has no series for the mount's backing tree %s: %v", m.Backing, got)
		}
	}

	// Subscriptions: the named one by its name, the anonymous one by a
	// stable id; both saw the published events.
	subs := labelSets(second, "semprop_subscription_delivered_total")
	if len(subs) != 2 {
		t.Fatalf("subscription series %v, want 2", subs)
	}
	if got := value(second, "semprop_subscription_delivered_total", labels{"subscription": "live-named"}); got < nPublish {
		t.Errorf("delivered{subscription=live-named} = %v, want >= %d", got, nPublish)
	}
	// The anonymous one: no name, and an id that is not empty.
	var anonID string
	for _, m := range second["semprop_subscription_delivered_total"].GetMetric() {
		name, id := "", ""
		for _, l := range m.Label {
			switch l.GetName() {
			case "subscription":
				name = l.GetValue()
			case "id":
				id = l.GetValue()
			}
		}
		if name == "" {
			anonID = id
		}
	}
	if anonID == "" {
		t.Errorf("no anonymous subscription series with an id label: %v", subs)
	} else if got := value(second, "semprop_subscription_delivered_total", labels{"subscription": "", "id": anonID}); got < nPublish {
		t.Errorf("delivered{id=%s} = %v, want >= %d", anonID, got, nPublish)
	}
	if got := value(second, "semprop_consumer_events_total", labels{"consumer": "audit", "outcome": "delivered"}); got < nPublish {
		t.Errorf("consumer_events_total{audit, delivered} = %v, want >= %d", got, nPublish)
	}
	if got := value(second, "semprop_stream_events_total", nil); got < nPublish {
		t.Errorf("stream_events_total = %v, want >= %d", got, nPublish)
	}
	for _, name := range []string{
		"semprop_subscription_delivered_total", "semprop_subscription_queue_depth",
		"semprop_stream_events_total", "semprop_consumer_pending",
	} {
		a, b := labelSets(first, name), labelSets(second, name)
		if !slices.Equal(a, b) || len(a) == 0 {
			t.Errorf("%s series moved between scrapes (or are missing): %v then %v", name, a, b)
		}
	}
}

type labels map[string]string

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func post(t *testing.T, url, ctype, body string, want int) {
	t.Helper()
	resp, err := http.Post(url, ctype, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("POST %s: %s, want %d", url, resp.Status, want)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for %s", what)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

// checkFamilies checks every family's name and type against the
// Prometheus conventions.
func checkFamilies(t *testing.T, mfs map[string]*dto.MetricFamily) {
	t.Helper()
	for name, mf := range mfs {
		std := strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_")
		if !std && !strings.HasPrefix(name, "semprop_") {
			t.Errorf("family %s: want the prefix semprop_ (or a standard go_, process_, promhttp_ one)", name)
		}
		total := strings.HasSuffix(name, "_total")
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			if !total {
				t.Errorf("counter %s: want the suffix _total", name)
			}
		case dto.MetricType_GAUGE:
			if total {
				t.Errorf("gauge %s is named like a counter", name)
			}
		case dto.MetricType_HISTOGRAM:
			if !strings.HasSuffix(name, "_seconds") && !strings.HasSuffix(name, "_bytes") {
				t.Errorf("histogram %s: want a unit suffix (_seconds, _bytes)", name)
			}
		case dto.MetricType_SUMMARY:
			if !std {
				t.Errorf("summary %s: semprop exports histograms", name)
			}
		default:
			t.Errorf("family %s has type %v", name, mf.GetType())
		}
		if mf.GetHelp() == "" {
			t.Errorf("family %s has no help", name)
		}
	}
}

// checkCountersGrow checks that no counter series went down between two
// scrapes.
func checkCountersGrow(t *testing.T, a, b map[string]*dto.MetricFamily) {
	t.Helper()
	for name, mf := range a {
		if mf.GetType() != dto.MetricType_COUNTER {
			continue
		}
		after := map[string]float64{}
		if mb, ok := b[name]; ok {
			for _, m := range mb.Metric {
				after[labelKey(m)] = m.GetCounter().GetValue()
			}
		}
		for _, m := range mf.Metric {
			if v, ok := after[labelKey(m)]; ok && v < m.GetCounter().GetValue() {
				t.Errorf("counter %s{%s} went down: %v then %v", name, labelKey(m), m.GetCounter().GetValue(), v)
			}
		}
	}
}

func labelKey(m *dto.Metric) string {
	var parts []string
	for _, l := range m.Label {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// labelSets lists the label sets of a family's series, sorted.
func labelSets(mfs map[string]*dto.MetricFamily, name string) []string {
	var out []string
	if mf, ok := mfs[name]; ok {
		for _, m := range mf.Metric {
			out = append(out, labelKey(m))
		}
	}
	sort.Strings(out)
	return out
}

// value sums the series of a family whose labels include want: counter
// and gauge values, histogram sample counts.
func value(mfs map[string]*dto.MetricFamily, name string, want labels) float64 {
	mf, ok := mfs[name]
	if !ok {
		return -1
	}
	var sum float64
	for _, m := range mf.Metric {
		match := true
		for k, v := range want {
			got := ""
			for _, l := range m.Label {
				if l.GetName() == k {
					got = l.GetValue()
				}
			}
			if got != v {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			sum += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			sum += m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			sum += float64(m.GetHistogram().GetSampleCount())
		case dto.MetricType_UNTYPED:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}
