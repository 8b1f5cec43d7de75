package monitor

import (
	"math"
	"slices"
	"time"
)

// LinearFit is a least-squares line through samples: the value at T0 is
// Intercept and it changes by Slope per second (Prometheus' deriv and
// predict_linear).
type LinearFit struct {
	T0        time.Time
	Intercept float64
	Slope     float64 // per second
}

// FitLinear fits a line to s by ordinary least squares; it needs two
// samples at different times.
func FitLinear(s []Sample) (LinearFit, bool) {
	if len(s) < 2 {
		return LinearFit{}, false
	}
	t0 := s[0].T
	var n, sx, sy, sxx, sxy float64
	for _, x := range s {
		if math.IsNaN(x.V) || math.IsInf(x.V, 0) {
			continue
		}
		dx := x.T.Sub(t0).Seconds()
		n++
		sx += dx
		sy += x.V
		sxx += dx * dx
		sxy += dx * x.V
	}
	den := n*sxx - sx*sx
	if n < 2 || den == 0 {
		return LinearFit{}, false
	}
	slope := (n*sxy - sx*sy) / den
	return LinearFit{T0: t0, Slope: slope, Intercept: (sy - slope*sx) / n}, true
}

// At returns the line's value at t.
func (f LinearFit) At(t time.Time) float64 {
	return f.Intercept + f.Slope*t.Sub(f.T0).Seconds()
}

// TimeTo returns how long after now the line reaches limit: 0 if it is
// there already, +Inf (as the largest Duration) if it moves away or is
// flat.
func (f LinearFit) TimeTo(now time.Time, limit float64) time.Duration {
	cur := f.At(now)
	if f.Slope == 0 || (limit-cur)/f.Slope < 0 {
		if cur == limit {
			return 0
		}
		return math.MaxInt64
	}
	secs := (limit - cur) / f.Slope
	if secs > 1e9 {
		return math.MaxInt64
	}
	return time.Duration(secs * float64(time.Second))
}

// HoltWinters is additive Holt-Winters (triple exponential smoothing):
// level, trend and a seasonal component of Period samples. Alpha, Beta
// and Gamma are the smoothing factors of each.
type HoltWinters struct {
	Alpha, Beta, Gamma float64
	Period             int

	level, trend float64
	season       []float64
	n            int
}

// Fit runs the smoothing over ys, which must hold at least two periods;
// it reports false when they do not.
func (h *HoltWinters) Fit(ys []float64) bool {
	m := h.Period
	if m < 2 || len(ys) < 2*m {
		return false
	}
	// Initial level and trend from the first two seasons, initial
	// seasonal indices from the first season's deviations.
	var s1, s2 float64
	for i := range m {
		s1 += ys[i]
		s2 += ys[m+i]
	}
	s1 /= float64(m)
	s2 /= float64(m)
	h.level = s1
	h.trend = (s2 - s1) / float64(m)
	// Seasonal indices: the mean deviation from the trend line over
	// the first two seasons (one season alone carries all its noise).
	h.season = make([]float64, m)
	for i := range m {
		a := ys[i] - (s1 + h.trend*(float64(i)-float64(m-1)/2))
		b := ys[m+i] - (s2 + h.trend*(float64(i)-float64(m-1)/2))
		h.season[i] = (a + b) / 2
	}
	h.level = s2 + h.trend*float64(m-1)/2
	h.n = 2 * m
	for i := 2 * m; i < len(ys); i++ {
		h.update(ys[i])
	}
	return true
}

func (h *HoltWinters) update(y float64) {
	m := h.Period
	si := h.n % m
	last := h.level
	h.level = h.Alpha*(y-h.season[si]) + (1-h.Alpha)*(h.level+h.trend)
	h.trend = h.Beta*(h.level-last) + (1-h.Beta)*h.trend
	h.season[si] = h.Gamma*(y-h.level) + (1-h.Gamma)*h.season[si]
	h.n++
}

// Forecast returns the value k steps after the last fitted one (k >= 1).
func (h *HoltWinters) Forecast(k int) float64 {
	si := (h.n + k - 1) % h.Period
	return h.level + float64(k)*h.trend + h.season[si]
}

// Default smoothing factors of PredictSeasonal.
const (
	hwAlpha = 0.2
	hwBeta  = 0.01
	hwGamma = 0.2
)

// PredictSeasonal forecasts s at the time at, with additive Holt-Winters
// of the given period. The samples are taken as evenly spaced (their
// median interval). With less than two periods of history it falls back
// to the least-squares line.
func PredictSeasonal(s []Sample, period time.Duration, at time.Time) (float64, bool) {
	if len(s) < 2 {
		return 0, false
	}
	gaps := make([]time.Duration, 0, len(s)-1)
	for i := 1; i < len(s); i++ {
		gaps = append(gaps, s[i].T.Sub(s[i-1].T))
	}
	slices.Sort(gaps)
	step := gaps[len(gaps)/2]
	m := 0
	if step > 0 {
		m = int(math.Round(float64(period) / float64(step)))
	}
	ys := make([]float64, len(s))
	for i, x := range s {
		ys[i] = x.V
	}
	h := &HoltWinters{Alpha: hwAlpha, Beta: hwBeta, Gamma: hwGamma, Period: m}
	if !h.Fit(ys) {
		f, ok := FitLinear(s)
		return f.At(at), ok
	}
	k := max(1, int(math.Round(float64(at.Sub(s[len(s)-1].T))/float64(step))))
	return h.Forecast(k), true
}
