package monitor

import (
	"math"
	"math/rand/v2"
	"time"
)

// Synthetic series with known truth for the trend tests. Every generator
// takes its own *rand.Rand built from a fixed seed, so a run is
// reproducible; truth is the noise-free value.

// synthSeed is the seed of every synthetic series.
const synthSeed = 20261205

var synthStart = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

type synth struct {
	name    string
	samples []Sample  // observed (with noise)
	truth   []float64 // noise-free value at each sample
}

// linearFill is a disk filling at rate bytes/s from used0, observed every
// step with relative noise (uniform ±noise of the value).
func linearFill(r *rand.Rand, used0, rate, noise float64, step time.Duration, n int) synth {
	s := synth{name: "linear"}
	for i := range n {
		t := synthStart.Add(time.Duration(i) * step)
		v := used0 + rate*float64(i)*step.Seconds()
		s.truth = append(s.truth, v)
		s.samples = append(s.samples, Sample{T: t, V: v * (1 + noise*(2*r.Float64()-1))})
	}
	return s
}

// dailySeasonal is base + slope·t + amp·sin(2πt/day) with Gaussian noise
// of sd noise·amp.
func dailySeasonal(r *rand.Rand, base, slopePerDay, amp, noise float64, step time.Duration, n int) synth {
	s := synth{name: "seasonal"}
	for i := range n {
		d := time.Duration(i) * step
		days := d.Hours() / 24
		v := base + slopePerDay*days + amp*math.Sin(2*math.Pi*days)
		s.truth = append(s.truth, v)
		s.samples = append(s.samples, Sample{T: synthStart.Add(d), V: v + noise*amp*r.NormFloat64()})
	}
	return s
}

// stepChange is a level that jumps from a to b at sample at, with
// Gaussian noise of sd noise·a.
func stepChange(r *rand.Rand, a, b, noise float64, at int, step time.Duration, n int) synth {
	s := synth{name: "step"}
	for i := range n {
		v := a
		if i >= at {
			v = b
		}
		s.truth = append(s.truth, v)
		s.samples = append(s.samples, Sample{T: synthStart.Add(time.Duration(i) * step), V: v + noise*a*r.NormFloat64()})
	}
	return s
}
