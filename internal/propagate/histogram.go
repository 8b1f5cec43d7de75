package propagate

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram counts durations in power-of-two buckets of nanoseconds with
// four linear sub-buckets each (at most 25% relative error). Observe is
// lock-free and allocation-free; it is safe for concurrent use.
type Histogram struct {
	buckets [64 * 4]atomic.Uint64
	count   atomic.Uint64
	sum     atomic.Int64
}

func bucketOf(ns int64) int {
	if ns < 4 {
		if ns < 0 {
			ns = 0
		}
		return int(ns)
	}
	exp := 63 - bits.LeadingZeros64(uint64(ns)) // ns in [2^exp, 2^(exp+1))
	sub := int(ns>>(exp-2)) & 3
	return exp*4 + sub
}

// bucketUpper is the largest value that falls into bucket i.
func bucketUpper(i int) int64 {
	if i < 4 {
		return int64(i)
	}
	exp, sub := i/4, i%4
	return (int64(4+sub+1) << (exp - 2)) - 1
}

// Observe records one duration in nanoseconds.
func (h *Histogram) Observe(ns int64) {
	h.buckets[bucketOf(ns)].Add(1)
	h.count.Add(1)
	h.sum.Add(ns)
}

// HistogramSnapshot is a point-in-time copy of a Histogram.
type HistogramSnapshot struct {
	Count   uint64
	Sum     time.Duration
	Buckets []Bucket // non-empty buckets, ascending
}

// Bucket counts the observations up to and including Le.
type Bucket struct {
	Le    time.Duration
	Count uint64
}

// Snapshot copies the histogram.
func (h *Histogram) Snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Count: h.count.Load(), Sum: time.Duration(h.sum.Load())}
	for i := range h.buckets {
		if n := h.buckets[i].Load(); n > 0 {
			s.Buckets = append(s.Buckets, Bucket{Le: time.Duration(bucketUpper(i)), Count: n})
		}
	}
	return s
}

// Quantile returns an upper bound of the q-quantile (0 < q ≤ 1).
func (s HistogramSnapshot) Quantile(q float64) time.Duration {
	var total uint64
	for _, b := range s.Buckets {
		total += b.Count
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for _, b := range s.Buckets {
		seen += b.Count
		if seen >= rank {
			return b.Le
		}
	}
	return s.Buckets[len(s.Buckets)-1].Le
}
