package analytics

import (
	"math/rand/v2"
	"testing"
)

// TestSketchMergeReset: merging a sketch of few additions by its hashes
// (or a size sketch by its used bins) gives the same registers and bins
// as a dense merge, and a reset leaves a sketch equal to a new one, for
// few and for many additions.
func TestSketchMergeReset(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 5))
	for _, n := range []int{0, 1, hllFew, hllFew + 1, 5000} {
		var a, b hll
		d, e := newDDSketch(), newDDSketch()
		for range n {
			b.addHash(r.Uint64())
			e.add(float64(r.IntN(1 << 20)))
		}
		a.addHash(r.Uint64())
		d.add(4096)
		// The reference: register by register, bin by bin.
		want := a.reg
		for i, x := range b.reg {
			want[i] = max(want[i], x)
		}
		wantBins := d.bins
		for i, c := range e.bins {
			wantBins[i] += c
		}
		a.merge(&b)
		d.merge(e)
		if a.reg != want {
			t.Errorf("n=%d: hll merge differs from the register-wise maximum", n)
		}
		if d.bins != wantBins || d.count != uint64(n+1) {
			t.Errorf("n=%d: size sketch merge differs from the bin-wise sum (count %d)", n, d.count)
		}
		for _, s := range []*hll{&a, &b} {
			s.reset()
			if s.reg != (hll{}).reg || len(s.few) != 0 || s.many {
				t.Errorf("n=%d: hll not empty after reset", n)
			}
		}
		for _, s := range []*ddSketch{d, e} {
			s.reset()
			if *s != *newDDSketch() {
				t.Errorf("n=%d: size sketch not empty after reset", n)
			}
		}
	}
}
