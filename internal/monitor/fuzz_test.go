package monitor

import (
	"context"
	"testing"
	"time"
)

func FuzzParseExpr(f *testing.F) {
	for _, s := range []string{
		`up == 0`, `rate(req_total[5m]) > 1`, `sum by (code) (rate(x[1m]))`,
		`histogram_quantile(0.99, rate(a_bucket[5m])) > 0.1`, `predict_linear(free[1h], 4h) < 0`,
		`absent(up{job="a"})`, `analytics("events", "type", 1m)[1h]`, `ratio(a, b) > 0.1 and c`,
		`up{job=~"a|b", x!~'y'}`, `-(1 + 2) * 3 / 4`, `predict_seasonal(x[1d], 1d, 1h)`,
	} {
		f.Add(s)
	}
	ev := &Evaluator{Store: exprStore(), Analytics: &fakeAnalytics{}}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := ParseExpr(src)
		if err != nil {
			return
		}
		if e.String() != src {
			t.Fatalf("String() = %q, want %q", e.String(), src)
		}
		// A checked expression evaluates without panicking.
		_, _ = ev.Eval(context.Background(), e, t0.Add(10*time.Minute))
	})
}

func FuzzParseRuleFile(f *testing.F) {
	f.Add(string(DefaultRules()))
	f.Add("rules:\n- alert: A\n  expr: up == 0\n  for: 5m\n  annotations: {summary: '{{ $value }}'}\n")
	f.Add("inhibit_rules:\n- source_matchers: ['a=\"b\"']\n  target_matchers: ['c=~\"d\"']\n  equal: [x]\n")
	f.Fuzz(func(t *testing.T, src string) {
		_, rules, err := ParseRuleFile([]byte(src))
		if err != nil {
			return
		}
		ev := &Evaluator{Store: exprStore()}
		for _, r := range rules {
			_, _ = r.eval(context.Background(), ev, t0.Add(10*time.Minute))
		}
	})
}

func FuzzParseMatchers(f *testing.F) {
	for _, s := range []string{`alertname="A"`, `{a=~"x|y", b!=""}`, `a!~'z'`, `a=b`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		ms, err := ParseMatchers(src)
		if err != nil {
			return
		}
		for _, m := range ms {
			if _, err := ParseMatchers(m.String()); err != nil {
				t.Fatalf("ParseMatchers(%q) of a matcher's String = %v", m.String(), err)
			}
		}
	})
}
