package filter

import (
	"fmt"
	"hash/maphash"
	"math/bits"
	"slices"
	"sync/atomic"

	"github.com/semprop/semprop/event"
)

// maxCacheFields bounds the fields a cached filter may read.
const maxCacheFields = 8

// ways is the associativity of the cache.
const ways = 4

var cacheSeed = maphash.MakeSeed()

// Cache remembers a filter's results, keyed by the values of exactly the
// fields the filter reads: events of the same shape (same type, same comm,
// same size, …) share one entry. It is worth it only for filters much more
// expensive than a hash of their inputs — expressions on the VM, many
// globs. The cache is a fixed array of 4-way sets (a new entry takes an
// empty way or evicts one in turn); lookups take no lock and a hit does not
// allocate. It is safe for concurrent use.
type Cache struct {
	f      Filter
	fields []*field
	slots  []atomic.Pointer[cacheEntry]
	mask   uint64 // selects a set: slots[(hash&mask)*ways:][:ways]
	hits   atomic.Uint64
	misses atomic.Uint64
}

type cacheEntry struct {
	hash   uint64
	known  uint64 // bit i: field i present
	strs   []string
	nums   []int64
	result bool
}

// cacheKey is the values of the fields a filter reads, on the stack.
type cacheKey struct {
	hash  uint64
	known uint64
	strs  [maxCacheFields]string
	nums  [maxCacheFields]int64
}

var _ Filter = (*Cache)(nil)

// NewCache wraps f with a cache of at least size entries (rounded up to a
// power of two). It fails with ErrNotCacheable when f reads fields it
// cannot name (expressions over attrs, foreign Filter implementations) or
// more than 8 of them.
func NewCache(f Filter, size int) (*Cache, error) {
	rs := readsOf(f)
	if rs.unknown {
		return nil, fmt.Errorf("cache %v: %w", f.Kind(), ErrNotCacheable)
	}
	var fields []*field
	for _, bf := range builtins {
		if rs.fields&bf.bit != 0 && !slices.Contains(fields, bf) {
			fields = append(fields, bf)
		}
	}
	slices.SortFunc(fields, func(a, b *field) int { return int(a.bit) - int(b.bit) })
	for _, name := range rs.attrs {
		af, err := lookupField(name)
		if err != nil {
			return nil, err
		}
		fields = append(fields, af)
	}
	if len(fields) > maxCacheFields {
		return nil, fmt.Errorf("cache %v: reads %d fields, more than %d: %w", f.Kind(), len(fields), maxCacheFields, ErrNotCacheable)
	}
	if size < 1 {
		size = 1
	}
	sets := 1 << bits.Len(uint((size+ways-1)/ways-1))
	return &Cache{f: f, fields: fields, slots: make([]atomic.Pointer[cacheEntry], sets*ways), mask: uint64(sets - 1)}, nil
}

func (c *Cache) key(ev *event.Event, k *cacheKey) {
	h := uint64(len(c.fields))
	for i, f := range c.fields {
		var v uint64
		if f.hasNum() {
			n, ok := f.numVal(ev)
			if ok {
				k.known |= 1 << i
				k.nums[i] = n
				v = uint64(n)
			}
		} else if s, ok := f.strVal(ev); ok {
			k.known |= 1 << i
			k.strs[i] = s
			v = maphash.String(cacheSeed, s)
		}
		h = (h^v)*0x9E3779B97F4A7C15 + uint64(i)
		h ^= h >> 29
	}
	k.hash = h ^ k.known
}

func (e *cacheEntry) equal(k *cacheKey) bool {
	if e.hash != k.hash || e.known != k.known {
		return false
	}
	for i := range e.nums {
		if e.nums[i] != k.nums[i] || e.strs[i] != k.strs[i] {
			return false
		}
	}
	return true
}

// Match returns the cached result for ev's shape, or evaluates the filter
// and remembers the result.
func (c *Cache) Match(ev *event.Event) bool {
	var k cacheKey
	c.key(ev, &k)
	set := c.slots[(k.hash&c.mask)*ways:][:ways]
	victim := -1
	for i := range set {
		e := set[i].Load()
		if e == nil {
			if victim < 0 {
				victim = i
			}
			continue
		}
		if e.equal(&k) {
			c.hits.Add(1)
			return e.result
		}
	}
	misses := c.misses.Add(1)
	r := c.f.Match(ev)
	if victim < 0 {
		victim = int(misses % ways)
	}
	n := len(c.fields)
	set[victim].Store(&cacheEntry{hash: k.hash, known: k.known, result: r,
		strs: slices.Clone(k.strs[:n]), nums: slices.Clone(k.nums[:n])})
	return r
}

// Kind returns "cache".
func (c *Cache) Kind() string { return "cache" }

// Cost is the cost of hashing the fields the filter reads.
func (c *Cache) Cost() int { return min(c.f.Cost(), len(c.fields)*costCompare+costCompare) }

// Validate validates the wrapped filter.
func (c *Cache) Validate() error { return c.f.Validate() }

func (c *Cache) reads() readSet { return readsOf(c.f) }

// CacheStats counts lookups.
type CacheStats struct {
	Hits, Misses uint64
}

// HitRate is Hits / (Hits + Misses), or 0 before any lookup.
func (s CacheStats) HitRate() float64 {
	if s.Hits+s.Misses == 0 {
		return 0
	}
	return float64(s.Hits) / float64(s.Hits+s.Misses)
}

// Stats returns the hit and miss counts so far.
func (c *Cache) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load()}
}
