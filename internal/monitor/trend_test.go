package monitor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func mape(pred, truth []float64) float64 {
	var sum float64
	for i := range pred {
		sum += math.Abs(pred[i]-truth[i]) / math.Abs(truth[i])
	}
	return 100 * sum / float64(len(pred))
}

// TestTrendAccuracy measures the trend estimates on synthetic series with
// known truth and reports the table; each row must reach MAPE <= 10%.
func TestTrendAccuracy(t *testing.T) {
	r := rand.New(rand.NewPCG(synthSeed, 1))
	type row struct {
		name string
		mape float64
	}
	var rows []row
	const step = 5 * time.Minute

	// Linear fills at several rates: fit on the first 6 hours, predict
	// each of the next 6 hours.
	for _, rate := range []float64{1e3, 1e5, 1e7} {
		s := linearFill(r, 1e9, rate, 0.01, step, 144)
		fit, ok := FitLinear(s.samples[:72])
		if !ok {
			t.Fatal("FitLinear failed")
		}
		var pred, truth []float64
		for i := 72; i < 144; i++ {
			pred = append(pred, fit.At(s.samples[i].T))
			truth = append(truth, s.truth[i])
		}
		rows = append(rows, row{fmt.Sprintf("linear fill %.0e B/s, predict_linear 6h ahead", rate), mape(pred, truth)})
	}

	// Daily seasonality with noise: Holt-Winters on three days, forecast
	// the fourth day (every step ahead from the end of the third).
	for _, noise := range []float64{0.05, 0.2} {
		s := dailySeasonal(r, 1000, 50, 300, noise, step, 4*288)
		hw := &HoltWinters{Alpha: hwAlpha, Beta: hwBeta, Gamma: hwGamma, Period: 288}
		ys := make([]float64, 3*288)
		for i := range ys {
			ys[i] = s.samples[i].V
		}
		if !hw.Fit(ys) {
			t.Fatal("Fit failed")
		}
		var pred, truth []float64
		for k := 1; k <= 288; k++ {
			pred = append(pred, hw.Forecast(k))
			truth = append(truth, s.truth[3*288+k-1])
		}
		rows = append(rows, row{fmt.Sprintf("daily seasonality, noise %.0f%% of amplitude, Holt-Winters 1 day ahead", 100*noise), mape(pred, truth)})
		// The least-squares line on the same series, for comparison: not
		// required to pass (a line cannot follow a season).
		fit, _ := FitLinear(s.samples[:3*288])
		var lp []float64
		for k := 1; k <= 288; k++ {
			lp = append(lp, fit.At(s.samples[3*288+k-1].T))
		}
		t.Logf("  (for comparison: a line on the same series: MAPE %.1f%%)", mape(lp, truth))
	}

	// A step change: one-step-ahead Holt-Winters forecasts (period one
	// day; two days of history first) through a 50% level jump.
	{
		s := stepChange(r, 200, 300, 0.03, 2*288+100, step, 3*288)
		var pred, truth []float64
		for i := 2 * 288; i < 3*288; i++ {
			p, ok := PredictSeasonal(s.samples[:i], 24*time.Hour, s.samples[i].T)
			if !ok {
				t.Fatal("PredictSeasonal failed")
			}
			pred = append(pred, p)
			truth = append(truth, s.truth[i])
		}
		rows = append(rows, row{"step change +50%, Holt-Winters one step ahead over the day of the change", mape(pred, truth)})
	}

	t.Logf("%-85s %8s", "series", "MAPE")
	for _, rw := range rows {
		t.Logf("%-85s %7.2f%%", rw.name, rw.mape)
		if rw.mape > 10 {
			t.Errorf("%s: MAPE %.2f%%, want <= 10%%", rw.name, rw.mape)
		}
	}
}

// TestTimeToFullAccuracy predicts when a disk fills once 10% of the fill
// has been observed, over many fills: three mean rates, bursty writes
// (each minute's rate uniform within ±50% of the mean), a slow drift of
// the mean (up to ±15% over the fill), measurement noise, and random
// start levels. The truth is when the simulated fill reaches capacity.
// At least 80% of the predictions must be within ±20% of the truth.
func TestTimeToFullAccuracy(t *testing.T) {
	r := rand.New(rand.NewPCG(synthSeed, 2))
	const capacity = 100e9
	const step = time.Minute
	type bucket struct{ cases, good int }
	byRate := map[string]*bucket{}
	total := bucket{}
	var errs []float64
	for c := range 300 {
		rate := []float64{1e6, 1e7, 5e7}[c%3]
		noise := []float64{0.0001, 0.001, 0.005}[(c/3)%3]
		drift := 0.3 * (r.Float64() - 0.5) // relative change of the mean over the whole fill
		used0 := capacity * (0.1 + 0.6*r.Float64())
		nominal := (capacity - used0) / rate / step.Seconds() // steps to full at the mean rate
		// Simulate the whole fill.
		var used []float64
		u := used0
		for i := 0; u < capacity; i++ {
			used = append(used, u)
			mean := rate * (1 + drift*float64(i)/nominal)
			u += mean * (1 + (r.Float64() - 0.5)) * step.Seconds()
		}
		fullAt := float64(len(used)) * step.Seconds() // seconds from the start
		// Observe until 10% of the fill has happened.
		var obs []Sample
		for i, v := range used {
			obs = append(obs, Sample{T: synthStart.Add(time.Duration(i) * step), V: v * (1 + noise*(2*r.Float64()-1))})
			if v-used0 >= 0.1*(capacity-used0) {
				break
			}
		}
		now := obs[len(obs)-1].T
		fit, ok := FitLinear(obs)
		if !ok {
			t.Fatalf("case %d: FitLinear failed", c)
		}
		got := fit.TimeTo(now, capacity).Seconds()
		want := fullAt - now.Sub(synthStart).Seconds()
		k := fmt.Sprintf("rate %.0e B/s", rate)
		if byRate[k] == nil {
			byRate[k] = &bucket{}
		}
		byRate[k].cases++
		total.cases++
		errs = append(errs, math.Abs(got-want)/want)
		if math.Abs(got-want) <= 0.2*want {
			byRate[k].good++
			total.good++
		}
	}
	for _, k := range []string{"rate 1e+06 B/s", "rate 1e+07 B/s", "rate 5e+07 B/s"} {
		b := byRate[k]
		t.Logf("time to full, %-16s within ±20%%: %3d/%3d (%.0f%%)", k, b.good, b.cases, 100*float64(b.good)/float64(b.cases))
	}
	pct := 100 * float64(total.good) / float64(total.cases)
	slices.Sort(errs)
	t.Logf("time to full, all: %d/%d (%.0f%%); median error %.1f%%, 90th percentile %.1f%%", total.good, total.cases, pct, 100*errs[len(errs)/2], 100*errs[len(errs)*9/10])
	if pct < 80 {
		t.Errorf("time to full within ±20%% in %.0f%% of cases, want >= 80%%", pct)
	}
}

func TestLinearFitTimeTo(t *testing.T) {
	s := []Sample{{synthStart, 10}, {synthStart.Add(10 * time.Second), 20}}
	f, ok := FitLinear(s)
	if !ok || math.Abs(f.Slope-1) > 1e-9 {
		t.Fatalf("FitLinear = %+v, %v; want slope 1", f, ok)
	}
	now := synthStart.Add(10 * time.Second)
	if got := f.TimeTo(now, 30); got != 10*time.Second {
		t.Errorf("TimeTo(30) = %v, want 10s", got)
	}
	if got := f.TimeTo(now, 0); got != math.MaxInt64 {
		t.Errorf("TimeTo(0) = %v, want never", got)
	}
	if _, ok := FitLinear(s[:1]); ok {
		t.Error("FitLinear of one sample ok, want not")
	}
}
