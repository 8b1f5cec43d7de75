package analytics

import "strconv"

// The dimensions an aggregate is kept by.
const (
	dimType = iota
	dimComm
	dimUID
	dimDir
	nDims
)

var dimNames = [nDims]string{"type", "comm", "uid", "dir"}

// parseDim returns the dimension named s.
func parseDim(s string) (int, bool) {
	for i, n := range dimNames {
		if n == s {
			return i, true
		}
	}
	return 0, false
}

// otherKey collects the keys of a dimension beyond maxKeys in one pane.
const otherKey = "(other)"

// unknownKey is the comm or uid of an event that does not carry one.
const unknownKey = "(unknown)"

// cb is a count and a byte total.
type cb struct{ count, bytes int64 }

// cdtKey is a process writing one type of event under a directory: what
// the insight detector watches.
type cdtKey struct{ comm, dir, typ string }

// slab hands out cb cells in chunks, so that a pane that is reset and
// reused allocates nothing once it has seen its usual number of keys.
type slab struct {
	chunks [][]cb
	n      int // cells used
}

const slabChunk = 256

func (s *slab) get() *cb {
	c, i := s.n/slabChunk, s.n%slabChunk
	if c == len(s.chunks) {
		s.chunks = append(s.chunks, make([]cb, slabChunk))
	}
	s.n++
	p := &s.chunks[c][i]
	*p = cb{}
	return p
}

func (s *slab) reset() { s.n = 0 }

// pane is the aggregate of one tumbling interval (a second or a minute) of
// event time: totals, exact counters per key of each dimension (at most
// maxKeys a dimension, the rest in otherKey), a space-saving summary of
// paths, a HyperLogLog of distinct paths and a DDSketch of write sizes.
// Sliding windows are sums of panes.
type pane struct {
	start    int64 // Unix seconds; -1 when unused
	count    int64
	bytes    int64
	firstSeq uint64
	lastSeq  uint64
	dims     [nDims]map[string]*cb
	cdt      map[cdtKey]*cb // nil unless the view detects insights
	paths    *spaceSaving
	distinct *hll
	sizes    *ddSketch
	mem      slab
}

func newPane(pathCap int, withCDT bool) *pane {
	p := &pane{start: -1, paths: newSpaceSaving(pathCap), distinct: new(hll), sizes: new(ddSketch)}
	for i := range p.dims {
		p.dims[i] = make(map[string]*cb)
	}
	if withCDT {
		p.cdt = make(map[cdtKey]*cb)
	}
	return p
}

// resetTo empties p for the interval starting at start.
func (p *pane) resetTo(start int64) {
	p.start = start
	p.count, p.bytes, p.firstSeq, p.lastSeq = 0, 0, 0, 0
	for _, m := range p.dims {
		clear(m)
	}
	if p.cdt != nil {
		clear(p.cdt)
	}
	p.paths.reset()
	p.distinct.reset()
	p.sizes.reset()
	p.mem.reset()
}

// sample is what one event contributes, computed once for every pane and
// view it updates.
type sample struct {
	seq   uint64
	sec   int64 // event time, Unix seconds
	typ   string
	path  string
	dir   string
	comm  string
	uid   string
	bytes int64
	write bool // a write with a known size: goes into the size sketch
	hash  uint64
}

func (p *pane) addKey(dim int, key string, b int64, maxKeys int) {
	m := p.dims[dim]
	c, ok := m[key]
	if !ok {
		if len(m) >= maxKeys {
			key = otherKey
			c, ok = m[key]
		}
		if !ok {
			c = p.mem.get()
			m[key] = c
		}
	}
	c.count++
	c.bytes += b
}

// add folds s into p.
func (p *pane) add(s *sample, maxKeys int) {
	if p.count == 0 {
		p.firstSeq = s.seq
	}
	p.lastSeq = s.seq
	p.count++
	p.bytes += s.bytes
	p.addKey(dimType, s.typ, s.bytes, maxKeys)
	p.addKey(dimComm, s.comm, s.bytes, maxKeys)
	p.addKey(dimUID, s.uid, s.bytes, maxKeys)
	p.addKey(dimDir, s.dir, s.bytes, maxKeys)
	if p.cdt != nil {
		k := cdtKey{s.comm, s.dir, s.typ}
		c, ok := p.cdt[k]
		if !ok {
			if len(p.cdt) >= maxKeys {
				k = cdtKey{otherKey, otherKey, s.typ}
				c, ok = p.cdt[k]
			}
			if !ok {
				c = p.mem.get()
				p.cdt[k] = c
			}
		}
		c.count++
		c.bytes += s.bytes
	}
	if s.path != "" {
		p.paths.add(s.path, s.bytes)
		p.distinct.addHash(s.hash)
	}
	if s.write {
		p.sizes.add(float64(s.bytes))
	}
}

// uidKeys formats uids once.
type uidKeys map[uint32]string

func (u uidKeys) key(uid uint32) string {
	if s, ok := u[uid]; ok {
		return s
	}
	s := strconv.FormatUint(uint64(uid), 10)
	if len(u) < 1<<16 {
		u[uid] = s
	}
	return s
}

// dirOf returns the first depth components of the absolute path p
// ("/srv/data" for "/srv/data/x/y" at depth 2), or p's parent when it is
// shallower; "" for an empty path.
func dirOf(p string, depth int) string {
	if p == "" || p[0] != '/' {
		return ""
	}
	n := 0
	for i := 1; i < len(p); i++ {
		if p[i] == '/' {
			n++
			if n == depth {
				return p[:i]
			}
		}
	}
	// Fewer than depth separators after the root: the parent directory.
	for i := len(p) - 1; i > 0; i-- {
		if p[i] == '/' {
			return p[:i]
		}
	}
	return "/"
}
