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

// cell is the count and byte total of one key in a pane.
type cell struct {
	cb
	key string
}

// cdtKey is a process writing one type of event under a directory: what
// the insight detector watches.
type cdtKey struct{ comm, dir, typ string }

// cdtRef is a cdtKey by the cells of its keys in a second pane: hashing
// three pointers costs less per event than hashing three strings. A nil
// comm and dir stand for the keys beyond maxKeys.
type cdtRef struct{ comm, dir, typ *cell }

// slab hands out cells in chunks, so that a pane that is reset and
// reused allocates nothing once it has seen its usual number of keys.
type slab struct {
	chunks [][]cell
	n      int // cells used
}

const slabChunk = 256

func (s *slab) get(key string) *cell {
	c, i := s.n/slabChunk, s.n%slabChunk
	if c == len(s.chunks) {
		s.chunks = append(s.chunks, make([]cell, slabChunk))
	}
	s.n++
	p := &s.chunks[c][i]
	*p = cell{key: key}
	return p
}

func (s *slab) reset() {
	for c := range (s.n + slabChunk - 1) / slabChunk {
		clear(s.chunks[c]) // drop the keys' strings
	}
	s.n = 0
}

// pane is the aggregate of one tumbling interval (a second or a minute) of
// event time: totals, exact counters per key of each dimension (at most
// maxKeys a dimension, the rest in otherKey), a top-K summary of paths, a
// HyperLogLog of distinct paths and a DDSketch of write sizes. Sliding
// windows are sums of panes.
//
// Events go into second panes only (add): the cost per event does not
// depend on how many resolutions there are. A minute pane is the merge of
// its seconds, each merged once closed (merge); until then a query of a
// long window adds the open seconds to the minutes.
type pane struct {
	start    int64 // Unix seconds; -1 when unused
	count    int64
	bytes    int64
	firstSeq uint64
	lastSeq  uint64
	dims     [nDims]map[string]*cell
	// last is the cell each dimension last counted: events come in runs
	// of the same process, user and type, and a string compare costs
	// less than a map lookup.
	last [nDims]*cell
	// The (comm, dir, type) counters of the insight detector: by cell in
	// a second pane (cdtRefs), by key in a minute pane (cdt); nil unless
	// the view detects insights.
	cdtRefs  map[cdtRef]*cell
	lastCDT  cdtRef
	lastCDTc *cell
	cdt      map[cdtKey]*cell
	paths    *spaceSaving // second panes
	sum      *pathSummary // minute panes
	distinct *hll
	sizes    *ddSketch
	mem      slab
}

// newSecondPane returns a pane that events are added to.
func newSecondPane(pathCap int, withCDT bool) *pane {
	p := newPane()
	p.paths = newSpaceSaving(pathCap)
	if withCDT {
		p.cdtRefs = make(map[cdtRef]*cell)
	}
	return p
}

// newMinutePane returns a pane that second panes are merged into.
func newMinutePane(pathCap int, withCDT bool) *pane {
	p := newPane()
	p.sum = newPathSummary(pathCap)
	if withCDT {
		p.cdt = make(map[cdtKey]*cell)
	}
	return p
}

func newPane() *pane {
	p := &pane{start: -1, distinct: new(hll), sizes: newDDSketch()}
	for i := range p.dims {
		p.dims[i] = make(map[string]*cell)
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
	p.last = [nDims]*cell{}
	if p.cdtRefs != nil {
		clear(p.cdtRefs)
	}
	p.lastCDT, p.lastCDTc = cdtRef{}, nil
	if p.cdt != nil {
		clear(p.cdt)
	}
	if p.paths != nil {
		p.paths.reset()
	}
	if p.sum != nil {
		p.sum.reset()
	}
	p.distinct.reset()
	p.sizes.reset()
	p.mem.reset()
}

// top returns the top-K summary of p's paths.
func (p *pane) top() topCounts {
	if p.paths != nil {
		return p.paths
	}
	return p.sum
}

// sample is what one event contributes, computed once for every pane and
// view it updates.
type sample struct {
	seq   uint64
	sec   int64 // event time, Unix seconds
	typ   string
	path  string
	dir   string // dirOf(path, depth), found on demand (dirKey)
	depth int    // 0 once dir is found
	comm  string
	uid   string
	bytes int64
	write bool // a write with a known size: goes into the size sketch
	bin   int  // the size sketch's bin of bytes
	hash  uint64
}

// dirKey returns the "dir" key of the sample's path.
func (s *sample) dirKey() string {
	if s.depth > 0 {
		s.dir, s.depth = dirOf(s.path, s.depth), 0
	}
	return s.dir
}

// cellOf returns the cell of key in dimension dim, creating it (or, past
// maxKeys, the otherKey cell).
func (p *pane) cellOf(dim int, key string, maxKeys int) *cell {
	if c := p.last[dim]; c != nil && c.key == key {
		return c
	}
	m := p.dims[dim]
	c, ok := m[key]
	if !ok {
		if len(m) >= maxKeys {
			key = otherKey
			c, ok = m[key]
		}
		if !ok {
			c = p.mem.get(key)
			m[key] = c
		}
	}
	p.last[dim] = c
	return c
}

// add folds s into the second pane p; paths is the view's cache of
// path entries.
func (p *pane) add(s *sample, maxKeys int, paths *ssCache) {
	if p.count == 0 {
		p.firstSeq = s.seq
	}
	p.lastSeq = s.seq
	p.count++
	p.bytes += s.bytes
	typ := p.cellOf(dimType, s.typ, maxKeys)
	comm := p.cellOf(dimComm, s.comm, maxKeys)
	uid := p.cellOf(dimUID, s.uid, maxKeys)
	var dir *cell
	var pe *ssEntry
	if s.path != "" {
		e, fresh := p.paths.addHashed(s.path, s.hash, s.bytes, &paths[s.hash&(ssRecent-1)])
		if fresh || e.dir == nil {
			e.dir = p.cellOf(dimDir, s.dirKey(), maxKeys)
		}
		dir, pe = e.dir, e
		p.distinct.addHash(s.hash)
	} else {
		dir = p.cellOf(dimDir, "", maxKeys)
	}
	for _, c := range [...]*cell{typ, comm, uid, dir} {
		c.count++
		c.bytes += s.bytes
	}
	if p.cdtRefs != nil {
		k := cdtRef{comm, dir, typ}
		c := p.lastCDTc
		if k != p.lastCDT && pe != nil && pe.cdtC != nil && pe.cdtKey == k {
			// The path's last event had the same process and type (its
			// dir is the path's): no lookup.
			c = pe.cdtC
			p.lastCDT, p.lastCDTc = k, c
		}
		if k != p.lastCDT || c == nil {
			var ok bool
			c, ok = p.cdtRefs[k]
			if !ok {
				if len(p.cdtRefs) >= maxKeys {
					k = cdtRef{nil, nil, typ}
					c, ok = p.cdtRefs[k]
				}
				if !ok {
					c = p.mem.get("")
					p.cdtRefs[k] = c
				}
			}
			p.lastCDT, p.lastCDTc = cdtRef{comm, dir, typ}, c
		}
		if pe != nil {
			pe.cdtKey, pe.cdtC = cdtRef{comm, dir, typ}, c
		}
		c.count++
		c.bytes += s.bytes
	}
	if s.write {
		p.sizes.addBin(s.bin)
	}
}

// merge folds the closed second pane o into the minute pane p.
func (p *pane) merge(o *pane, maxKeys int) {
	if o.count == 0 {
		return
	}
	if p.count == 0 || o.firstSeq < p.firstSeq {
		p.firstSeq = o.firstSeq
	}
	p.lastSeq = max(p.lastSeq, o.lastSeq)
	p.count += o.count
	p.bytes += o.bytes
	for d, m := range o.dims {
		for key, c := range m {
			t := p.cellOf(d, key, maxKeys)
			t.count += c.count
			t.bytes += c.bytes
		}
	}
	if p.cdt != nil {
		for k, c := range o.cdtRefs {
			ck := cdtKey{otherKey, otherKey, k.typ.key}
			if k.comm != nil {
				ck = cdtKey{k.comm.key, k.dir.key, k.typ.key}
			}
			t, ok := p.cdt[ck]
			if !ok {
				if len(p.cdt) >= maxKeys {
					ck = cdtKey{otherKey, otherKey, ck.typ}
					t, ok = p.cdt[ck]
				}
				if !ok {
					t = p.mem.get("")
					p.cdt[ck] = t
				}
			}
			t.count += c.count
			t.bytes += c.bytes
		}
	}
	p.sum.merge(o.paths)
	p.distinct.merge(o.distinct)
	p.sizes.merge(o.sizes)
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
