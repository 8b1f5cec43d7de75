package monitor

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// knownMetrics returns the names of the metrics semprop exports: those
// docs/metrics.md documents (brace lists expanded; the cluster section's
// short names prefixed with semprop_cluster_) and those of this package,
// gathered from a Monitor and a Health. A histogram's _bucket, _sum and
// _count count as known with it.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, tok := range regexp.MustCompile("`(semprop_[a-z0-9_{},]+)`").FindAllStringSubmatch(string(doc), -1) {
		for _, n := range expandBraces(tok[1]) {
			known[n] = true
		}
	}
	if i := strings.Index(string(doc), "## Cluster"); i >= 0 {
		sec := string(doc)[i:]
		if j := strings.Index(sec[3:], "\n## "); j >= 0 {
			sec = sec[:j+3]
		}
		for _, tok := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(sec, -1) {
			known["semprop_cluster_"+tok[1]] = true
		}
	}
	if len(known) < 50 {
		t.Fatalf("only %d metric names found in docs/metrics.md", len(known))
	}
	reg := prometheus.NewRegistry()
	mon, err := New(Config{}, Options{Logger: quiet, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	mon.metrics.evals.WithLabelValues("x")
	mon.metrics.evalFailures.WithLabelValues("x")
	mon.metrics.transitions.WithLabelValues("x", "firing")
	mon.metrics.notifications.WithLabelValues("events", "sent")
	h := NewHealth()
	h.Register("x", "x", func() Check { return Check{} })
	reg.MustRegister(mon.Collector(), h.Collector())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		known[f.GetName()] = true
	}
	for n := range known {
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			known[n+suf] = true
		}
	}
	return known
}

func expandBraces(s string) []string {
	i := strings.IndexByte(s, '{')
	if i < 0 {
		return []string{s}
	}
	j := strings.IndexByte(s[i:], '}')
	if j < 0 {
		return []string{s}
	}
	var out []string
	for _, alt := range strings.Split(s[i+1:i+j], ",") {
		out = append(out, expandBraces(s[:i]+alt+s[i+j+1:])...)
	}
	return out
}

// TestDefaultRulesMetricsExist: every metric a default rule reads is one
// semprop exports.
func TestDefaultRulesMetricsExist(t *testing.T) {
	known := knownMetrics(t)
	_, rules, err := ParseRuleFile(DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		for _, n := range r.Metrics() {
			if !known[n] {
				t.Errorf("default rule %s reads %s, which semprop does not export", r.Name(), n)
			}
		}
	}
	// The test can fail: a made-up name is not known.
	if known["semprop_no_such_metric"] {
		t.Error("knownMetrics knows everything")
	}
}

// TestDefaultRulesDocumented: docs/monitoring.md describes every default
// rule.
func TestDefaultRulesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/monitoring.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rules, err := ParseRuleFile(DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if !strings.Contains(string(doc), "`"+r.Name()+"`") {
			t.Errorf("docs/monitoring.md does not describe the default rule %s", r.Name())
		}
	}
}

// TestGrafanaDashboard: docs/grafana-dashboard.json is valid JSON, a
// dashboard with panels, and its queries reference only metrics semprop
// exports.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) < 10 {
		t.Fatalf("dashboard: title %q, uid %q, %d panels", dash.Title, dash.UID, len(dash.Panels))
	}
	known := knownMetrics(t)
	name := regexp.MustCompile(`\bsemprop_[a-z0-9_]+`)
	var used []string
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				used = append(used, n)
				if !known[n] {
					t.Errorf("panel %q: %s is not a semprop metric", p.Title, n)
				}
			}
		}
	}
	slices.Sort(used)
	t.Logf("%d panels, %d distinct metrics", len(dash.Panels), len(slices.Compact(used)))
}
