package monitor

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"
)

// SeriesSource gives analytics series (the rollups of the event stream)
// to expressions: analytics("metric", "by", step)[range]. One series per
// value of the dimension by ("" for the total), with a sample per step in
// [from, to]. Implementations must be safe for concurrent use.
type SeriesSource interface {
	Series(ctx context.Context, metric, by string, step time.Duration, from, to time.Time) ([]Series, error)
}

// Elem is one labelled value of an expression's result.
type Elem struct {
	Labels Labels  `json:"labels"`
	V      float64 `json:"value"`
}

// Vector is an instant result: at most one element per label set.
type Vector []Elem

// Lookback is how far back an instant selector looks for a series'
// latest sample; a series with none that recent is stale and left out.
const Lookback = 5 * time.Minute

// Evaluator evaluates expressions against a Store and, for analytics(),
// a SeriesSource. It is safe for concurrent use.
type Evaluator struct {
	Store     *Store
	Analytics SeriesSource // nil: analytics() selects nothing
}

type evalState struct {
	ctx context.Context
	ev  *Evaluator
	now time.Time
}

// Eval evaluates e at now. A scalar result is returned as one element with
// no labels.
func (ev *Evaluator) Eval(ctx context.Context, e *Expr, now time.Time) (Vector, error) {
	st := &evalState{ctx: ctx, ev: ev, now: now}
	v, err := st.eval(e.root)
	if err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case float64:
		return Vector{{Labels: Labels{}, V: v}}, nil
	case Vector:
		return v, nil
	}
	return nil, fmt.Errorf("%w: the expression is a range; wrap it in a function", ErrExpr)
}

func (st *evalState) eval(n node) (any, error) {
	switch n := n.(type) {
	case *numberLit:
		return n.v, nil
	case *selector:
		if n.rng > 0 {
			return st.ev.Store.Select(n.name, n.matchers, st.now.Add(-n.rng), st.now), nil
		}
		ss := st.ev.Store.Select(n.name, n.matchers, st.now.Add(-Lookback), st.now)
		out := make(Vector, 0, len(ss))
		for _, s := range ss {
			out = append(out, Elem{Labels: s.Labels, V: s.Samples[len(s.Samples)-1].V})
		}
		return out, nil
	case *analyticsSel:
		if st.ev.Analytics == nil {
			return []Series(nil), nil
		}
		ss, err := st.ev.Analytics.Series(st.ctx, n.metric, n.by, n.step, st.now.Add(-n.rng), st.now)
		if err != nil {
			return nil, fmt.Errorf("analytics %s: %w", n.metric, err)
		}
		return ss, nil
	case *unaryNeg:
		x, err := st.eval(n.x)
		if err != nil {
			return nil, err
		}
		return arith(x, -1.0, "*"), nil
	case *binary:
		l, err := st.eval(n.l)
		if err != nil {
			return nil, err
		}
		r, err := st.eval(n.r)
		if err != nil {
			return nil, err
		}
		switch n.op {
		case "and", "or", "unless":
			return setOp(n.op, l.(Vector), r.(Vector)), nil
		}
		return arith(l, r, n.op), nil
	case *aggregate:
		x, err := st.eval(n.x)
		if err != nil {
			return nil, err
		}
		return aggregateVec(n.op, n.by, toVector(x)), nil
	case *call:
		args := make([]any, len(n.args))
		for i, a := range n.args {
			v, err := st.eval(a)
			if err != nil {
				return nil, err
			}
			args[i] = v
		}
		return st.call(n, args)
	}
	return nil, fmt.Errorf("%w: cannot evaluate %T", ErrExpr, n)
}

func toVector(x any) Vector {
	if f, ok := x.(float64); ok {
		return Vector{{Labels: Labels{}, V: f}}
	}
	return x.(Vector)
}

func isCmp(op string) bool {
	switch op {
	case "==", "!=", ">", "<", ">=", "<=":
		return true
	}
	return false
}

func apply(op string, a, b float64) (float64, bool) {
	switch op {
	case "+":
		return a + b, true
	case "-":
		return a - b, true
	case "*":
		return a * b, true
	case "/":
		return a / b, true
	case "==":
		return a, a == b
	case "!=":
		return a, a != b
	case ">":
		return a, a > b
	case "<":
		return a, a < b
	case ">=":
		return a, a >= b
	case "<=":
		return a, a <= b
	}
	return math.NaN(), false
}

// arith applies an arithmetic or comparison operator. Comparisons filter:
// an element stays (with its left-hand value) where the comparison holds.
// Between vectors, elements pair up by equal labels; a vector of one
// element without labels pairs with every element, like a number.
func arith(l, r any, op string) any {
	lf, lok := l.(float64)
	rf, rok := r.(float64)
	if lok && rok {
		v, ok := apply(op, lf, rf)
		if isCmp(op) {
			if ok {
				return 1.0
			}
			return 0.0
		}
		return v
	}
	if lv, ok := l.(Vector); ok && len(lv) == 1 && len(lv[0].Labels) == 0 && !rok {
		if rv := r.(Vector); len(rv) != 1 || len(rv[0].Labels) != 0 {
			l, lok, lf = lv[0].V, true, lv[0].V
		}
	}
	if rv, ok := r.(Vector); ok && len(rv) == 1 && len(rv[0].Labels) == 0 && !lok {
		r, rok, rf = rv[0].V, true, rv[0].V
	}
	var out Vector
	switch {
	case rok:
		for _, e := range l.(Vector) {
			if v, ok := apply(op, e.V, rf); !isCmp(op) || ok {
				if !isCmp(op) {
					e.V = v
				}
				out = append(out, e)
			}
		}
	case lok:
		for _, e := range r.(Vector) {
			v, ok := apply(op, lf, e.V)
			if isCmp(op) {
				if ok {
					out = append(out, e)
				}
				continue
			}
			out = append(out, Elem{Labels: e.Labels, V: v})
		}
	default:
		right := make(map[string]float64, len(r.(Vector)))
		for _, e := range r.(Vector) {
			right[e.Labels.key()] = e.V
		}
		for _, e := range l.(Vector) {
			rv, found := right[e.Labels.key()]
			if !found {
				continue
			}
			v, ok := apply(op, e.V, rv)
			if isCmp(op) {
				if ok {
					out = append(out, e)
				}
				continue
			}
			out = append(out, Elem{Labels: e.Labels, V: v})
		}
	}
	if out == nil {
		out = Vector{}
	}
	return out
}

// setOp: and keeps the left elements with a partner on the right, unless
// those without, or all of the left plus the right elements without a
// partner. A right side of one element without labels is everyone's
// partner.
func setOp(op string, l, r Vector) Vector {
	keys := make(map[string]bool, len(r))
	wild := len(r) == 1 && len(r[0].Labels) == 0
	for _, e := range r {
		keys[e.Labels.key()] = true
	}
	out := Vector{}
	switch op {
	case "and":
		for _, e := range l {
			if wild || keys[e.Labels.key()] {
				out = append(out, e)
			}
		}
	case "unless":
		for _, e := range l {
			if !wild && !keys[e.Labels.key()] {
				out = append(out, e)
			}
		}
	case "or":
		left := make(map[string]bool, len(l))
		for _, e := range l {
			left[e.Labels.key()] = true
			out = append(out, e)
		}
		for _, e := range r {
			if !left[e.Labels.key()] {
				out = append(out, e)
			}
		}
	}
	return out
}

func aggregateVec(op string, by []string, v Vector) Vector {
	type acc struct {
		l        Labels
		sum, n   float64
		min, max float64
	}
	groups := map[string]*acc{}
	var order []string
	for _, e := range v {
		gl := e.Labels.only(by)
		k := gl.key()
		a := groups[k]
		if a == nil {
			a = &acc{l: gl, min: math.Inf(1), max: math.Inf(-1)}
			groups[k] = a
			order = append(order, k)
		}
		a.sum += e.V
		a.n++
		a.min = math.Min(a.min, e.V)
		a.max = math.Max(a.max, e.V)
	}
	out := make(Vector, 0, len(order))
	for _, k := range order {
		a := groups[k]
		var x float64
		switch op {
		case "sum":
			x = a.sum
		case "avg":
			x = a.sum / a.n
		case "min":
			x = a.min
		case "max":
			x = a.max
		case "count":
			x = a.n
		}
		out = append(out, Elem{Labels: a.l, V: x})
	}
	return out
}

func (st *evalState) call(n *call, args []any) (any, error) {
	perSeries := func(f func(s []Sample) (float64, bool)) Vector {
		out := Vector{}
		for _, s := range args[0].([]Series) {
			if v, ok := f(s.Samples); ok {
				out = append(out, Elem{Labels: s.Labels, V: v})
			}
		}
		return out
	}
	scalarArg := func(i int) float64 {
		if i >= len(args) {
			return math.NaN()
		}
		if f, ok := args[i].(float64); ok {
			return f
		}
		if v := args[i].(Vector); len(v) == 1 {
			return v[0].V
		}
		return math.NaN()
	}
	switch n.fn {
	case "rate", "increase":
		return perSeries(func(s []Sample) (float64, bool) {
			if len(s) < 2 {
				return 0, false
			}
			inc := counterIncrease(s)
			if n.fn == "rate" {
				return inc / s[len(s)-1].T.Sub(s[0].T).Seconds(), true
			}
			return inc, true
		}), nil
	case "delta":
		return perSeries(func(s []Sample) (float64, bool) {
			return s[len(s)-1].V - s[0].V, len(s) >= 2
		}), nil
	case "deriv":
		return perSeries(func(s []Sample) (float64, bool) {
			f, ok := FitLinear(s)
			return f.Slope, ok
		}), nil
	case "predict_linear":
		h := scalarArg(1)
		return perSeries(func(s []Sample) (float64, bool) {
			f, ok := FitLinear(s)
			return f.At(st.now.Add(seconds(h))), ok
		}), nil
	case "time_to":
		limit := scalarArg(1)
		return perSeries(func(s []Sample) (float64, bool) {
			f, ok := FitLinear(s)
			if !ok {
				return 0, false
			}
			return f.TimeTo(st.now, limit).Seconds(), true
		}), nil
	case "predict_seasonal":
		period, h := scalarArg(1), scalarArg(2)
		return perSeries(func(s []Sample) (float64, bool) {
			return PredictSeasonal(s, seconds(period), st.now.Add(seconds(h)))
		}), nil
	case "avg_over_time", "min_over_time", "max_over_time", "sum_over_time":
		return perSeries(func(s []Sample) (float64, bool) {
			vs := make([]float64, len(s))
			for i, x := range s {
				vs[i] = x.V
			}
			switch n.fn {
			case "min_over_time":
				return slices.Min(vs), true
			case "max_over_time":
				return slices.Max(vs), true
			}
			var sum float64
			for _, x := range vs {
				sum += x
			}
			if n.fn == "avg_over_time" {
				return sum / float64(len(vs)), true
			}
			return sum, true
		}), nil
	case "changes":
		return perSeries(func(s []Sample) (float64, bool) {
			c := 0
			for i := 1; i < len(s); i++ {
				if s[i].V != s[i-1].V {
					c++
				}
			}
			return float64(c), true
		}), nil
	case "absent", "absent_over_time":
		empty := false
		switch a := args[0].(type) {
		case Vector:
			empty = len(a) == 0
		case []Series:
			empty = len(a) == 0
		}
		if !empty {
			return Vector{}, nil
		}
		l := Labels{}
		if sel, ok := n.args[0].(*selector); ok {
			for _, m := range sel.matchers {
				if m.Type == MatchEqual {
					l[m.Name] = m.Value
				}
			}
		}
		return Vector{{Labels: l, V: 1}}, nil
	case "ratio":
		q := arith(args[0], args[1], "/")
		if f, ok := q.(float64); ok {
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return 0.0, nil
			}
			return f, nil
		}
		v := q.(Vector)
		for i := range v {
			if math.IsNaN(v[i].V) || math.IsInf(v[i].V, 0) {
				v[i].V = 0
			}
		}
		return v, nil
	case "histogram_quantile":
		return histogramQuantile(scalarArg(0), toVector(args[1])), nil
	case "abs":
		v := slices.Clone(toVector(args[0]))
		for i := range v {
			v[i].V = math.Abs(v[i].V)
		}
		return v, nil
	case "clamp_min":
		v := slices.Clone(toVector(args[0]))
		m := scalarArg(1)
		for i := range v {
			v[i].V = math.Max(v[i].V, m)
		}
		return v, nil
	case "scalar":
		return scalarArg(0), nil
	case "vector":
		return Vector{{Labels: Labels{}, V: scalarArg(0)}}, nil
	}
	return nil, fmt.Errorf("%w: unknown function %s", ErrExpr, n.fn)
}

func seconds(f float64) time.Duration {
	if math.IsNaN(f) || math.Abs(f) > 1e9 {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

// counterIncrease sums the increases between consecutive samples; a drop
// is a counter reset, after which the new value counts from zero.
func counterIncrease(s []Sample) float64 {
	var inc float64
	for i := 1; i < len(s); i++ {
		d := s[i].V - s[i-1].V
		if d < 0 {
			d = s[i].V
		}
		inc += d
	}
	return inc
}

// histogramQuantile computes the q-quantile from cumulative buckets (the
// le label), interpolating linearly within the bucket, per label set
// without le. A quantile in the +Inf bucket is the highest finite bound.
func histogramQuantile(q float64, v Vector) Vector {
	type bucket struct{ le, n float64 }
	groups := map[string][]bucket{}
	labels := map[string]Labels{}
	for _, e := range v {
		le, err := strconv.ParseFloat(e.Labels["le"], 64)
		if err != nil {
			continue
		}
		l := e.Labels.without("le")
		k := l.key()
		labels[k] = l
		groups[k] = append(groups[k], bucket{le, e.V})
	}
	out := Vector{}
	for k, bs := range groups {
		sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
		if len(bs) < 2 || !math.IsInf(bs[len(bs)-1].le, 1) {
			continue
		}
		total := bs[len(bs)-1].n
		if total <= 0 || math.IsNaN(q) {
			continue
		}
		rank := q * total
		var val float64
		for i, b := range bs {
			if b.n >= rank {
				if math.IsInf(b.le, 1) {
					val = bs[len(bs)-2].le
					break
				}
				lo, below := 0.0, 0.0
				if i > 0 {
					lo, below = bs[i-1].le, bs[i-1].n
				}
				if b.n == below {
					val = b.le
				} else {
					val = lo + (b.le-lo)*(rank-below)/(b.n-below)
				}
				break
			}
		}
		out = append(out, Elem{Labels: labels[k], V: val})
	}
	return out
}
