package monitor

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestReload swaps the rules from the file: an unchanged rule keeps its
// firing alert, a removed rule's alert resolves, a new rule evaluates, the
// store keeps the new rule's metric, and a broken file changes nothing.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.yaml")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`
rules:
  - alert: Stays
    expr: test_a > 1
  - alert: Goes
    expr: test_a > 2
`)
	reg := prometheus.NewRegistry()
	a := prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_a"})
	b := prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_b"})
	reg.MustRegister(a, b)
	a.Set(5)
	b.Set(7)
	off := false
	var clk clock
	clk.set(t0)
	mon, err := New(Config{DefaultRules: &off, RuleFiles: []string{file}, Interval: Duration(time.Hour)},
		Options{Logger: quiet, Gatherer: reg, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mon.Step(ctx, clk.add(15*time.Second))
	states := func() map[string]string {
		m := map[string]string{}
		for _, al := range mon.Alerts() {
			m[al.Name()] = al.State
		}
		return m
	}
	if got := states(); got["Stays"] != StateFiring || got["Goes"] != StateFiring {
		t.Fatalf("before the reload: %v; want both firing", got)
	}
	firedAt := mon.Alerts()[0].FiredAt

	write(`
rules:
  - alert: Stays
    expr: test_a > 1
  - alert: New
    expr: test_b > 6
`)
	if err := mon.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := states(); got["Stays"] != StateFiring || got["Goes"] != StateResolved {
		t.Errorf("after the reload: %v; want Stays firing, Goes resolved", got)
	}
	mon.Step(ctx, clk.add(15*time.Second))
	got := states()
	if got["Stays"] != StateFiring || got["New"] != StateFiring {
		t.Errorf("after a step: %v; want Stays and New firing", got)
	}
	for _, al := range mon.Alerts() {
		if al.Name() == "Stays" && !al.FiredAt.Equal(firedAt) {
			t.Errorf("Stays fired again at %v (first at %v): an unchanged rule keeps its alert", al.FiredAt, firedAt)
		}
	}
	if len(mon.Store().Select("test_b", nil, t0, clk.now())) == 0 {
		t.Error("the store keeps no sample of the new rule's metric")
	}

	write("rules: [{alert: Broken, expr: 'test_a >'}]")
	if err := mon.Reload(); err == nil {
		t.Fatal("a broken rule file reloaded")
	}
	if rs := mon.Rules(); len(rs) != 2 || rs[0].Alert != "Stays" || rs[1].Alert != "New" {
		t.Errorf("after a refused reload the rules are %+v; want Stays and New", rs)
	}
}
