package monitor

import (
	"context"
	"strings"
	"testing"
	"time"
)

// ruleRun evaluates r every 15s over values (one per step) of the gauge
// g and returns the alert's state after each step ("" when none).
func ruleRun(t *testing.T, rc RuleConfig, values []float64) []string {
	t.Helper()
	r, err := NewRule(rc)
	if err != nil {
		t.Fatalf("NewRule: %v", err)
	}
	st := NewStore(time.Hour, nil)
	ev := &Evaluator{Store: st}
	var out []string
	for i, v := range values {
		at := t0.Add(time.Duration(i) * 15 * time.Second)
		if !mathIsNaN(v) {
			st.Append("g", Labels{"x": "1"}, at, v)
		}
		if _, err := r.eval(context.Background(), ev, at); err != nil {
			t.Fatalf("eval: %v", err)
		}
		s := ""
		for _, a := range r.active {
			s = a.State
		}
		out = append(out, s)
	}
	return out
}

func mathIsNaN(f float64) bool { return f != f }

func TestRuleFor(t *testing.T) {
	rc := RuleConfig{Alert: "High", Expr: "g > 10", For: Duration(30 * time.Second)}
	got := ruleRun(t, rc, []float64{20, 20, 20, 5, 20, 20, 5})
	want := []string{"pending", "pending", "firing", "resolved", "pending", "pending", "resolved"}
	// The last: a pending alert that stops holding is dropped; it had
	// replaced the resolved one of step 4 (same labels).
	want[6] = ""
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("states = %v, want %v", got, want)
	}
}

func TestRuleKeepFiringFor(t *testing.T) {
	rc := RuleConfig{Alert: "High", Expr: "g > 10", KeepFiringFor: Duration(30 * time.Second)}
	got := ruleRun(t, rc, []float64{20, 5, 5, 5})
	// As in Prometheus, the 30s count from the first evaluation where the
	// condition no longer held (15s).
	want := "firing,firing,firing,resolved"
	if strings.Join(got, ",") != want {
		t.Errorf("states = %v, want %v", got, want)
	}
}

// TestRuleRecovery: with a recovery threshold, a value between the two
// thresholds keeps the alert firing (hysteresis) but does not start one.
func TestRuleRecovery(t *testing.T) {
	rc := RuleConfig{Alert: "High", Expr: "g > 10", Recovery: "g > 5"}
	got := ruleRun(t, rc, []float64{8, 20, 8, 8, 4, 8})
	want := "pending,firing,firing,firing,resolved,resolved"
	// Step 1: 8 is below the firing threshold: no alert at all (the state
	// string is "" then); a For of 0 makes 20 fire at once.
	want = ",firing,firing,firing,resolved,resolved"
	if strings.Join(got, ",") != want {
		t.Errorf("states = %v, want %v", got, want)
	}
}

func TestRuleTemplates(t *testing.T) {
	r, err := NewRule(RuleConfig{Alert: "Full", Expr: "g > 10",
		Labels:      map[string]string{"severity": "warning", "where": "{{ $labels.x }}"},
		Annotations: map[string]string{"summary": "{{ $labels.x }} at {{ $value | humanize }}", "d": "{{ 3600 | humanizeDuration }} {{ 0.25 | humanizePercentage }} {{ 2048 | humanize1024 }}"}})
	if err != nil {
		t.Fatal(err)
	}
	st := NewStore(time.Hour, nil)
	st.Append("g", Labels{"x": "disk1"}, t0, 12345)
	changed, err := r.eval(context.Background(), &Evaluator{Store: st}, t0)
	if err != nil || len(changed) != 1 {
		t.Fatalf("eval = %v, %v", changed, err)
	}
	a := changed[0]
	if a.Labels["alertname"] != "Full" || a.Labels["where"] != "disk1" || a.Labels["severity"] != "warning" {
		t.Errorf("labels = %v", a.Labels)
	}
	if got, want := a.Annotations["summary"], "disk1 at 12.35k"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
	if got, want := a.Annotations["d"], "1h0m0s 25% 2Ki"; got != want {
		t.Errorf("d = %q, want %q", got, want)
	}
}

func TestNewRuleErrors(t *testing.T) {
	for _, rc := range []RuleConfig{
		{Alert: "", Expr: "up"},
		{Alert: "bad name", Expr: "up"},
		{Alert: "A", Expr: "up{"},
		{Alert: "A", Expr: "up", Recovery: "("},
		{Alert: "A", Expr: "up", Labels: map[string]string{"alertname": "x"}},
		{Alert: "A", Expr: "up", Labels: map[string]string{"bad-name": "x"}},
		{Alert: "A", Expr: "up", Annotations: map[string]string{"s": "{{ .Nope"}},
		{Alert: "A", Expr: "up", For: -1},
	} {
		if _, err := NewRule(rc); err == nil {
			t.Errorf("NewRule(%+v) = nil error", rc)
		}
	}
	if _, _, err := ParseRuleFile([]byte("rules:\n- alert: A\n  expr: up\n- alert: A\n  expr: up\n")); err == nil {
		t.Error("a rule file defining A twice parsed")
	}
	if _, _, err := ParseRuleFile([]byte("rules:\n- alert: A\n  expr: up\n  nosuch: 1\n")); err == nil {
		t.Error("a rule file with an unknown field parsed")
	}
}
