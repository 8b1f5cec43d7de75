package analytics

import (
	"cmp"
	"slices"

	"github.com/zeebo/xxh3"
)

// ssCount is one monitored key of a top-K summary: count overstates the
// key's true count by at most err (count-err <= true <= count); bytes is
// a lower bound of its bytes (bytes of an evicted key are not inherited).
type ssCount struct {
	key   string
	count int64
	bytes int64
	err   int64
}

// ssEntry is a monitored key of a spaceSaving summary with its place in
// the stream-summary: the bucket of its count and its siblings there.
type ssEntry struct {
	ssCount
	bucket     int32
	prev, next int32 // siblings in the bucket; none is -1
	// dir is the owning pane's "dir" cell of the key (a path), set by
	// the pane: the directory of a path is found once per path and pane,
	// not once per event.
	dir *cell
	// cdt is the owning pane's (comm, dir, type) cell of the key's last
	// event, for the cells in cdtKey (cdtC nil: none yet).
	cdtKey cdtRef
	cdtC   *cell
}

// ssBucket holds the entries of one count; buckets form a list in
// ascending count order.
type ssBucket struct {
	count      int64
	head       int32 // first entry
	prev, next int32 // neighbour buckets; none is -1
}

// spaceSaving is the Space-Saving top-K summary (Metwally et al.) kept as
// a stream-summary: it monitors at most cap keys; a new key replaces one
// with the smallest count and inherits that count as its error. Every key
// whose true count exceeds N/cap is monitored, and count-err <= true <=
// count for each. Entries of equal count share a bucket and the buckets
// are linked in count order, so that counting an occurrence (moving an
// entry to the next bucket) and finding the smallest count are O(1).
// Entries and buckets live in slices addressed by index: a summary that is
// reset and refilled allocates nothing once grown.
type spaceSaving struct {
	cap   int
	n     int64 // events added
	byKey map[string]int32
	ents  []ssEntry
	bks   []ssBucket
	freeB []int32 // unused buckets
	minB  int32   // bucket of the smallest count; -1 when empty
}

// ssRecent is the number of slots of an ssCache.
const ssRecent = 4096

// ssCache is a direct-mapped cache by hash of the entries of keys added
// lately to the spaceSaving summaries of one view, in front of their
// byKey maps: a hit costs a compare of (mostly identical) strings
// instead of a map lookup. A slot is checked against the summary and
// the entry's key, so eviction and reset need not clear it.
type ssCache [ssRecent]ssSlot

type ssSlot struct {
	hash uint64
	ss   *spaceSaving
	i    int32
}

func newSpaceSaving(capacity int) *spaceSaving {
	// byKey grows with the keys a pane sees (and keeps its size across
	// resets): most panes see far fewer keys than capacity, and a map
	// sized for capacity in each of the hundreds of panes is most of the
	// engine's heap, which the garbage collector scans.
	return &spaceSaving{cap: capacity, byKey: make(map[string]int32), minB: -1}
}

func (s *spaceSaving) reset() {
	clear(s.byKey)
	clear(s.ents) // drop the keys' strings
	s.ents = s.ents[:0]
	s.bks = s.bks[:0]
	s.freeB = s.freeB[:0]
	s.minB = -1
	s.n = 0
}

// add counts one occurrence of key with b bytes and returns the key's
// entry, fresh when the key was not monitored.
func (s *spaceSaving) add(key string, b int64) (e *ssEntry, fresh bool) {
	var sl ssSlot
	return s.addHashed(key, xxh3.HashString(key), b, &sl)
}

// addHashed is add of a key whose xxh3 hash is h, with sl the slot of h
// in the view's ssCache.
func (s *spaceSaving) addHashed(key string, h uint64, b int64, sl *ssSlot) (e *ssEntry, fresh bool) {
	s.n++
	if i := sl.i; sl.ss == s && sl.hash == h && int(i) < len(s.ents) && s.ents[i].key == key {
		s.ents[i].bytes += b
		s.incr(i)
		return &s.ents[i], false
	}
	if i, ok := s.byKey[key]; ok {
		sl.hash, sl.ss, sl.i = h, s, i
		s.ents[i].bytes += b
		s.incr(i)
		return &s.ents[i], false
	}
	if len(s.ents) < s.cap {
		i := int32(len(s.ents))
		sl.hash, sl.ss, sl.i = h, s, i
		s.ents = append(s.ents, ssEntry{ssCount: ssCount{key: key, count: 1, bytes: b}})
		s.byKey[key] = i
		if s.minB >= 0 && s.bks[s.minB].count == 1 {
			s.attach(i, s.minB)
		} else {
			nb := s.newBucket(1, -1, s.minB)
			s.minB = nb
			s.attach(i, nb)
		}
		return &s.ents[i], true
	}
	i := s.bks[s.minB].head
	sl.hash, sl.ss, sl.i = h, s, i
	e = &s.ents[i]
	delete(s.byKey, e.key)
	e.key, e.err, e.bytes, e.dir, e.cdtC = key, e.count, b, nil, nil
	s.byKey[key] = i
	s.incr(i)
	return e, true
}

// incr moves entry i to the bucket of its count plus one.
func (s *spaceSaving) incr(i int32) {
	e := &s.ents[i]
	b := e.bucket
	c := e.count + 1
	e.count = c
	next := s.bks[b].next
	switch {
	case next >= 0 && s.bks[next].count == c:
		s.detach(i)
		s.attach(i, next)
	case s.bks[b].head == i && e.next < 0:
		s.bks[b].count = c // alone in its bucket: the bucket moves up
	default:
		nb := s.newBucket(c, b, next)
		s.detach(i)
		s.attach(i, nb)
	}
}

// newBucket links a new bucket of count c between prev and next.
func (s *spaceSaving) newBucket(c int64, prev, next int32) int32 {
	var nb int32
	if n := len(s.freeB); n > 0 {
		nb, s.freeB = s.freeB[n-1], s.freeB[:n-1]
	} else {
		nb = int32(len(s.bks))
		s.bks = append(s.bks, ssBucket{})
	}
	s.bks[nb] = ssBucket{count: c, head: -1, prev: prev, next: next}
	if prev >= 0 {
		s.bks[prev].next = nb
	}
	if next >= 0 {
		s.bks[next].prev = nb
	}
	return nb
}

// attach puts entry i first in bucket b.
func (s *spaceSaving) attach(i, b int32) {
	e := &s.ents[i]
	e.bucket, e.prev, e.next = b, -1, s.bks[b].head
	if e.next >= 0 {
		s.ents[e.next].prev = i
	}
	s.bks[b].head = i
}

// detach takes entry i out of its bucket, freeing the bucket when it
// empties.
func (s *spaceSaving) detach(i int32) {
	e := &s.ents[i]
	b := e.bucket
	if e.prev >= 0 {
		s.ents[e.prev].next = e.next
	} else {
		s.bks[b].head = e.next
	}
	if e.next >= 0 {
		s.ents[e.next].prev = e.prev
	}
	if s.bks[b].head >= 0 {
		return
	}
	bk := s.bks[b]
	if bk.prev >= 0 {
		s.bks[bk.prev].next = bk.next
	} else {
		s.minB = bk.next
	}
	if bk.next >= 0 {
		s.bks[bk.next].prev = bk.prev
	}
	s.freeB = append(s.freeB, b)
}

// min is the smallest monitored count when the summary is full, else 0:
// an unmonitored key occurred at most min times.
func (s *spaceSaving) min() int64 {
	if len(s.ents) < s.cap || s.minB < 0 {
		return 0
	}
	return s.bks[s.minB].count
}

// get returns the count of a monitored key.
func (s *spaceSaving) get(key string) (ssCount, bool) {
	i, ok := s.byKey[key]
	if !ok {
		return ssCount{}, false
	}
	return s.ents[i].ssCount, true
}

// each calls f with every monitored key.
func (s *spaceSaving) each(f func(c ssCount)) {
	for i := range s.ents {
		f(s.ents[i].ssCount)
	}
}

// pathSummary is the top-K summary of a minute: the merge of the closed
// seconds' spaceSaving summaries (the mergeable form of Space-Saving,
// Agarwal et al.). It keeps at most cap keys. When a key is not in one of
// the merged summaries, it gets that summary's bound for unmonitored keys
// in both its count and its error, so that count-err <= true <= count
// holds for the sum; when more than cap keys remain, the smallest are
// dropped and the bound of unmonitored keys rises to the largest count
// dropped. The bound over N events stays within 3N/cap.
type pathSummary struct {
	cap   int
	byKey map[string]int32
	ents  []ssCount
	floor int64 // an unmonitored key occurred at most floor times
}

func newPathSummary(capacity int) *pathSummary {
	return &pathSummary{cap: capacity, byKey: make(map[string]int32)} // grows as spaceSaving's
}

func (m *pathSummary) reset() {
	clear(m.byKey)
	clear(m.ents)
	m.ents = m.ents[:0]
	m.floor = 0
}

// merge folds the summary s into m.
func (m *pathSummary) merge(s *spaceSaving) {
	if len(s.ents) == 0 {
		return
	}
	mMin, sMin := m.floor, s.min()
	for i := range m.ents {
		e := &m.ents[i]
		if c, ok := s.get(e.key); ok {
			e.count += c.count
			e.err += c.err
			e.bytes += c.bytes
		} else {
			e.count += sMin
			e.err += sMin
		}
	}
	for i := range s.ents {
		c := s.ents[i].ssCount
		if _, ok := m.byKey[c.key]; ok {
			continue
		}
		c.count += mMin
		c.err += mMin
		m.byKey[c.key] = int32(len(m.ents))
		m.ents = append(m.ents, c)
	}
	m.floor = mMin + sMin
	if len(m.ents) <= m.cap {
		return
	}
	slices.SortFunc(m.ents, func(a, b ssCount) int { return cmp.Compare(b.count, a.count) })
	m.floor = max(m.floor, m.ents[m.cap].count)
	clear(m.ents[m.cap:])
	m.ents = m.ents[:m.cap]
	clear(m.byKey)
	for i := range m.ents {
		m.byKey[m.ents[i].key] = int32(i)
	}
}

// min is the bound of unmonitored keys.
func (m *pathSummary) min() int64 { return m.floor }

// get returns the count of a monitored key.
func (m *pathSummary) get(key string) (ssCount, bool) {
	i, ok := m.byKey[key]
	if !ok {
		return ssCount{}, false
	}
	return m.ents[i], true
}

// each calls f with every monitored key.
func (m *pathSummary) each(f func(c ssCount)) {
	for _, c := range m.ents {
		f(c)
	}
}

// topCounts is what a sliding window's top paths are merged from: the
// summary of a second or of a minute.
type topCounts interface {
	get(key string) (ssCount, bool)
	each(f func(c ssCount))
	min() int64
}

var (
	_ topCounts = (*spaceSaving)(nil)
	_ topCounts = (*pathSummary)(nil)
)
