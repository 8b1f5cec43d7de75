package analytics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/analytics/workload"
)

// TestInsightRelevance replays a generated week (workload.Seed) through the
// engine and scores the insights against the injected incidents: an
// insight is right when an incident of its kind, by its process, was
// running in its minute (or up to 3 minutes before: a drop needs a few
// minutes to add up). Targets: precision and recall >= 90% per kind.
func TestInsightRelevance(t *testing.T) {
	if testing.Short() {
		t.Skip("replays a week of events")
	}
	w := workload.New(workload.Seed, time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), 7)
	e := newTestEngine(t, Config{}, Options{Now: func() time.Time { return w.End() }})
	n := 0
	for ev := range w.Events() {
		e.Apply(ev)
		n++
	}
	e.mu.Lock()
	e.advanceLocked(w.End().Unix() + 120)
	e.mu.Unlock()
	got := e.Insights(nil, time.Time{}, maxInsights)
	t.Logf("%d events, %d incidents, %d insights", n, len(w.Incidents), len(got))

	kinds := []string{KindSpike, KindDrop, KindNewWriter, KindUnusualHour}
	var report strings.Builder
	for _, kind := range kinds {
		var tp, fp, found, total int
		hit := map[int]bool{}
		for _, in := range got {
			if in.Kind != kind {
				continue
			}
			ok := false
			for i, inc := range w.Incidents {
				if inc.Kind == kind && strings.HasPrefix(in.Key, inc.Comm+"@") &&
					!in.Time.Before(inc.Start) && in.Time.Before(inc.End.Add(3*time.Minute)) {
					ok, hit[i] = true, true
				}
			}
			if ok {
				tp++
			} else {
				fp++
				t.Logf("false %s: %s %s: %s", kind, in.Time.Format(time.RFC3339), in.Key, in.Explanation)
			}
		}
		for i, inc := range w.Incidents {
			if inc.Kind != kind {
				continue
			}
			total++
			if hit[i] {
				found++
			} else {
				t.Logf("missed %s: %s %s@%s", kind, inc.Start.Format(time.RFC3339), inc.Comm, inc.Dir)
			}
		}
		precision, recall := ratio(tp, tp+fp), ratio(found, total)
		fmt.Fprintf(&report, "%-13s precision %5.1f%% (%d/%d)  recall %5.1f%% (%d/%d)\n", kind, 100*precision, tp, tp+fp, 100*recall, found, total)
		if precision < 0.9 || recall < 0.9 {
			t.Errorf("%s: precision %.2f, recall %.2f, want >= 0.90 each", kind, precision, recall)
		}
	}
	t.Logf("relevance over %d days, seed %d:\n%s", w.Days, w.Seed, report.String())
	for _, in := range got[:min(len(got), 4)] {
		t.Logf("example: %s", in.Explanation)
	}
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}
