package analytics

import (
	"math"
	"math/bits"
	"sort"
)

// The sketches are written here rather than taken from a library: none of
// the usual ones (axiomhq/hyperloglog, DataDog/sketches-go) is in the
// dependency set this project draws from, and each is under a hundred
// lines. They are not safe for concurrent use; the engine guards them.

// hllP is the HyperLogLog precision: 2^14 registers, 16 KiB, a standard
// error of 1.04/sqrt(16384) = 0.81%.
const hllP = 14

// hllFew is how many hashes a HyperLogLog remembers: a sketch of that
// few additions is merged and reset by its hashes, not by its 16,384
// registers (a quiet second's pane).
const hllFew = 64

// hll is a HyperLogLog distinct counter with dense 8-bit registers and
// the linear-counting correction for small cardinalities.
type hll struct {
	// few comes first: the garbage collector scans an object up to its
	// last pointer, so the registers after it are not scanned.
	few  []uint64 // the hashes added, until there are more than hllFew
	many bool     // more than hllFew additions: few is incomplete
	reg  [1 << hllP]uint8
}

func (h *hll) reset() {
	if h.many {
		clear(h.reg[:])
	} else {
		for _, x := range h.few {
			h.reg[x>>(64-hllP)] = 0
		}
	}
	h.few, h.many = h.few[:0], false
}

// addHash adds an element by its 64-bit hash.
func (h *hll) addHash(x uint64) {
	i := x >> (64 - hllP)
	w := x<<hllP | 1<<(hllP-1) // the guard bit bounds the rank
	r := uint8(bits.LeadingZeros64(w)) + 1
	if r > h.reg[i] {
		h.reg[i] = r
	}
	if !h.many {
		if len(h.few) < hllFew {
			h.few = append(h.few, x)
		} else {
			h.many = true
		}
	}
}

// merge makes h the union of h and o.
func (h *hll) merge(o *hll) {
	if !o.many {
		for _, x := range o.few {
			h.addHash(x)
		}
		return
	}
	h.many = true
	for i, r := range o.reg {
		if r > h.reg[i] {
			h.reg[i] = r
		}
	}
}

// estimate returns the estimated number of distinct elements added.
func (h *hll) estimate() uint64 {
	const m = float64(1 << hllP)
	sum, zeros := 0.0, 0
	for _, r := range h.reg {
		sum += math.Ldexp(1, -int(r))
		if r == 0 {
			zeros++
		}
	}
	alpha := 0.7213 / (1 + 1.079/m)
	e := alpha * m * m / sum
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(m/float64(zeros)) // linear counting
	}
	return uint64(e + 0.5)
}

// ddAlpha is the DDSketch relative accuracy: a quantile is returned within
// 1% of the true value of that rank.
const (
	ddAlpha = 0.01
	ddBins  = 2048 // gamma^2048 ≈ 4e17: any byte count fits
)

var (
	ddGamma    = (1 + ddAlpha) / (1 - ddAlpha)
	ddLogGamma = math.Log(ddGamma)
)

// ddSketch is a DDSketch (Masson et al.) of positive values with dense
// bins: bin i holds values in (gamma^(i-1), gamma^i].
type ddSketch struct {
	zero  uint64 // values <= 1 (0 and 1 byte)
	bins  [ddBins]uint64
	count uint64
	// lo and hi bound the bins used (lo > hi when none): merges and
	// resets touch only those.
	lo, hi int
}

func newDDSketch() *ddSketch { return &ddSketch{lo: ddBins, hi: -1} }

func (d *ddSketch) reset() {
	if d.lo <= d.hi {
		clear(d.bins[d.lo : d.hi+1])
	}
	d.zero, d.count, d.lo, d.hi = 0, 0, ddBins, -1
}

func (d *ddSketch) add(v float64) { d.addBin(ddBin(v)) }

// ddBin returns the bin of v: -1 for values <= 1, which are counted apart.
func ddBin(v float64) int {
	if v <= 1 {
		return -1
	}
	return min(int(math.Ceil(math.Log(v)/ddLogGamma)), ddBins-1)
}

// addBin counts a value by its bin (ddBin).
func (d *ddSketch) addBin(i int) {
	d.count++
	if i < 0 {
		d.zero++
		return
	}
	d.bins[i]++
	d.lo, d.hi = min(d.lo, i), max(d.hi, i)
}

func (d *ddSketch) merge(o *ddSketch) {
	d.zero += o.zero
	d.count += o.count
	if o.lo > o.hi {
		return
	}
	for i := o.lo; i <= o.hi; i++ {
		d.bins[i] += o.bins[i]
	}
	d.lo, d.hi = min(d.lo, o.lo), max(d.hi, o.hi)
}

// quantile returns the q-quantile (0 <= q <= 1), 0 when empty.
func (d *ddSketch) quantile(q float64) float64 {
	if d.count == 0 {
		return 0
	}
	rank := uint64(q * float64(d.count-1))
	if rank < d.zero {
		return 1
	}
	seen := d.zero
	for i, c := range d.bins {
		seen += c
		if seen > rank {
			return 2 * math.Pow(ddGamma, float64(i)) / (ddGamma + 1)
		}
	}
	return 0
}

// keyCount is a key with its count and bytes, for sorting.
type keyCount struct {
	key          string
	count, bytes int64
	err          int64
}

// topOf sorts kcs by count (then key) and returns the first k.
func topOf(kcs []keyCount, k int) []keyCount {
	sort.Slice(kcs, func(i, j int) bool {
		if kcs[i].count != kcs[j].count {
			return kcs[i].count > kcs[j].count
		}
		return kcs[i].key < kcs[j].key
	})
	if len(kcs) > k {
		kcs = kcs[:k]
	}
	return kcs
}
