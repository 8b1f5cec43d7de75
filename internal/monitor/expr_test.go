package monitor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// exprStore holds ten minutes of samples every 15s:
//
//	up{job="a"} 1, up{job="b"} 0
//	req_total{code="200"} rising 10/s, req_total{code="500"} rising 1/s
//	  (with a counter reset of the 200 series at minute 5)
//	free 1000 falling 1/s
//	lat_bucket{le=0.1,0.5,+Inf}: 50, 90, 100 new observations every 15s
func exprStore() *Store {
	s := NewStore(time.Hour, nil)
	for i := 0; i <= 40; i++ {
		at := t0.Add(time.Duration(i) * 15 * time.Second)
		secs := float64(i * 15)
		s.Append("up", Labels{"job": "a"}, at, 1)
		s.Append("up", Labels{"job": "b"}, at, 0)
		ok := 10 * secs
		if i >= 20 {
			ok = 10 * (secs - 300)
		}
		s.Append("req_total", Labels{"code": "200"}, at, ok)
		s.Append("req_total", Labels{"code": "500"}, at, secs)
		s.Append("free", Labels{}, at, 1000-secs)
		for le, n := range map[string]float64{"0.1": 50, "0.5": 90, "+Inf": 100} {
			s.Append("lat_bucket", Labels{"le": le}, at, n*float64(i))
		}
	}
	return s
}

func sortVec(v Vector) Vector {
	v = slices.Clone(v)
	slices.SortFunc(v, func(a, b Elem) int { return strings.Compare(a.Labels.key(), b.Labels.key()) })
	for i := range v {
		v[i].V = math.Round(v[i].V*1e6) / 1e6
	}
	return v
}

func TestEval(t *testing.T) {
	ev := &Evaluator{Store: exprStore()}
	now := t0.Add(10 * time.Minute)
	tests := []struct {
		expr string
		want Vector
	}{
		{`up`, Vector{{Labels{"job": "a"}, 1}, {Labels{"job": "b"}, 0}}},
		{`up == 0`, Vector{{Labels{"job": "b"}, 0}}},
		{`up{job="a"}`, Vector{{Labels{"job": "a"}, 1}}},
		{`up{job=~"a|b"} > 0`, Vector{{Labels{"job": "a"}, 1}}},
		{`up{job!="a"}`, Vector{{Labels{"job": "b"}, 0}}},
		{`1 + 2 * 3`, Vector{{Labels{}, 7}}},
		{`(1 + 2) * 3`, Vector{{Labels{}, 9}}},
		{`-free`, Vector{{Labels{}, -400}}},
		{`rate(req_total{code="500"}[5m])`, Vector{{Labels{"code": "500"}, 1}}},
		{`increase(req_total{code="500"}[5m])`, Vector{{Labels{"code": "500"}, 285}}},
		// The reset at minute 5 counts from zero.
		{`increase(req_total{code="200"}[10m])`, Vector{{Labels{"code": "200"}, 2700 + 0 + 3000}}},
		{`sum(rate(req_total[5m]))`, Vector{{Labels{}, 11}}},
		{`sum by (code) (rate(req_total[5m])) > 5`, Vector{{Labels{"code": "200"}, 10}}},
		{`max(up)`, Vector{{Labels{}, 1}}},
		{`count(up)`, Vector{{Labels{}, 2}}},
		{`avg(up)`, Vector{{Labels{}, 0.5}}},
		{`ratio(rate(req_total{code="500"}[5m]), sum(rate(req_total[5m])))`, Vector{{Labels{"code": "500"}, 1.0 / 11}}},
		{`ratio(up, up)`, Vector{{Labels{"job": "a"}, 1}, {Labels{"job": "b"}, 0}}},
		{`deriv(free[5m])`, Vector{{Labels{}, -1}}},
		{`predict_linear(free[5m], 1h)`, Vector{{Labels{}, 400 - 3600}}},
		{`predict_linear(free[5m], 100) < 0`, Vector{}},
		{`time_to(free[5m], 0)`, Vector{{Labels{}, 400}}},
		{`delta(free[5m])`, Vector{{Labels{}, -285}}},
		{`min_over_time(free[5m])`, Vector{{Labels{}, 400}}},
		{`max_over_time(free[5m])`, Vector{{Labels{}, 685}}},
		{`avg_over_time(up[5m])`, Vector{{Labels{"job": "a"}, 1}, {Labels{"job": "b"}, 0}}},
		{`changes(up[5m])`, Vector{{Labels{"job": "a"}, 0}, {Labels{"job": "b"}, 0}}},
		{`absent(nothing{job="x"})`, Vector{{Labels{"job": "x"}, 1}}},
		{`absent(up)`, Vector{}},
		{`absent_over_time(nothing[5m])`, Vector{{Labels{}, 1}}},
		{`up and up == 1`, Vector{{Labels{"job": "a"}, 1}}},
		{`up unless up == 1`, Vector{{Labels{"job": "b"}, 0}}},
		{`up == 1 or up == 0`, Vector{{Labels{"job": "a"}, 1}, {Labels{"job": "b"}, 0}}},
		// A vector of one element without labels acts as a number.
		{`up > scalar(avg(up))`, Vector{{Labels{"job": "a"}, 1}}},
		{`up > avg(up)`, Vector{{Labels{"job": "a"}, 1}}},
		{`histogram_quantile(0.5, rate(lat_bucket[5m]))`, Vector{{Labels{}, 0.1}}},
		{`histogram_quantile(0.7, rate(lat_bucket[5m]))`, Vector{{Labels{}, 0.3}}},
		{`histogram_quantile(0.99, rate(lat_bucket[5m]))`, Vector{{Labels{}, 0.5}}},
		{`clamp_min(free - 500, 0)`, Vector{{Labels{}, 0}}},
		{`abs(free - 500)`, Vector{{Labels{}, 100}}},
		{`vector(3) * 2`, Vector{{Labels{}, 6}}},
		{`2 > 1`, Vector{{Labels{}, 1}}},
		{`free / 0`, Vector{{Labels{}, math.Inf(1)}}},
	}
	for _, tt := range tests {
		e, err := ParseExpr(tt.expr)
		if err != nil {
			t.Errorf("ParseExpr(%q) = %v", tt.expr, err)
			continue
		}
		got, err := ev.Eval(context.Background(), e, now)
		if err != nil {
			t.Errorf("Eval(%q) = %v", tt.expr, err)
			continue
		}
		if d := cmp.Diff(sortVec(tt.want), sortVec(got)); d != "" {
			t.Errorf("Eval(%q) (-want +got):\n%s", tt.expr, d)
		}
	}
}

func TestEvalStale(t *testing.T) {
	ev := &Evaluator{Store: exprStore()}
	got, err := ev.Eval(context.Background(), MustParseExpr(`up`), t0.Add(10*time.Minute+Lookback+time.Second))
	if err != nil || len(got) != 0 {
		t.Errorf("Eval(up) after the lookback = %v, %v; want nothing (stale)", got, err)
	}
}

func TestParseExprErrors(t *testing.T) {
	for _, src := range []string{
		``, `up{`, `up{job=}`, `up{job~"a"}`, `rate(up)`, `up[5m]`, `up[5m] + 1`, `nosuch(up)`,
		`rate(up[5m], 1)`, `up and 1`, `sum(up[5m])`, `(up`, `up)`, `up{job=~"("}`, `analytics("x")`,
		`1 +`, `"str"`, `up[5x]`, `histogram_quantile(up, up)`, `absent(1)`, `-up[5m]`,
		strings.Repeat("(", 100) + "1" + strings.Repeat(")", 100),
	} {
		if _, err := ParseExpr(src); !errors.Is(err, ErrExpr) && !errors.Is(err, ErrMatcher) {
			t.Errorf("ParseExpr(%q) = %v, want ErrExpr", src, err)
		}
	}
}

func TestExprMetrics(t *testing.T) {
	e := MustParseExpr(`histogram_quantile(0.9, rate(a_bucket[5m])) > 1 and b > c`)
	if got, want := e.Metrics(), []string{"a_bucket", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("Metrics() = %v, want %v", got, want)
	}
}

type fakeAnalytics struct{ calls []string }

func (f *fakeAnalytics) Series(_ context.Context, metric, by string, step time.Duration, from, to time.Time) ([]Series, error) {
	f.calls = append(f.calls, fmt.Sprintf("%s/%s/%v/%v", metric, by, step, to.Sub(from)))
	var ss []Series
	for _, v := range []string{"fs.write", "fs.create"} {
		s := Series{Name: metric, Labels: Labels{by: v}}
		for at := from.Add(step); !at.After(to); at = at.Add(step) {
			n := 10.0
			if v == "fs.write" {
				n = at.Sub(from).Minutes() // growing
			}
			s.Samples = append(s.Samples, Sample{T: at, V: n})
		}
		ss = append(ss, s)
	}
	return ss, nil
}

func TestEvalAnalytics(t *testing.T) {
	fa := &fakeAnalytics{}
	ev := &Evaluator{Store: NewStore(time.Hour, nil), Analytics: fa}
	got, err := ev.Eval(context.Background(), MustParseExpr(`deriv(analytics("events", "type", 1m)[1h]) > 0`), t0)
	if err != nil {
		t.Fatal(err)
	}
	want := Vector{{Labels{"type": "fs.write"}, 1.0 / 60}}
	if d := cmp.Diff(sortVec(want), sortVec(got)); d != "" {
		t.Errorf("analytics (-want +got):\n%s", d)
	}
	if want := []string{"events/type/1m0s/1h0m0s"}; !slices.Equal(fa.calls, want) {
		t.Errorf("Series calls = %v, want %v", fa.calls, want)
	}
}

func TestParseMatchers(t *testing.T) {
	ms, err := ParseMatchers(`{alertname="DiskFull", severity=~"warn|crit", tree!=''}`)
	if err != nil {
		t.Fatal(err)
	}
	l := Labels{"alertname": "DiskFull", "severity": "crit", "tree": "/srv"}
	if !matchAll(ms, l) {
		t.Errorf("%v does not match %v", ms, l)
	}
	l["severity"] = "info"
	if matchAll(ms, l) {
		t.Errorf("%v matches %v", ms, l)
	}
	for _, bad := range []string{`a`, `a=`, `=b`, `a="x" b="y"`, `{a="x"`, `a=~"["`} {
		if _, err := ParseMatchers(bad); err == nil {
			t.Errorf("ParseMatchers(%q) = nil error", bad)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for s, want := range map[string]time.Duration{"30s": 30 * time.Second, "1h30m": 90 * time.Minute, "1d": 24 * time.Hour, "1w": 7 * 24 * time.Hour, "100ms": 100 * time.Millisecond} {
		if got, err := ParseDuration(s); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "5", "5x", "m", "9999999999s", "400d"} {
		if _, err := ParseDuration(s); err == nil {
			t.Errorf("ParseDuration(%q) = nil error", s)
		}
	}
}
