package analytics

import (
	"sort"
	"time"

	"github.com/semprop/semprop/internal/auth"
)

// Ring sizes: second panes cover the last two minutes (plus the open
// ones), minute panes the last hour.
const (
	secRing = 130
	minRing = 62
	// secWindowMax is the longest window summed from second panes; longer
	// windows are summed from minute panes (whole minutes).
	secWindowMax = 120
	maxWindow    = 3600
)

// Resolutions of the rollups.
const (
	res1s = iota
	res1m
	res1h
	nRes
)

var resNames = [nRes]string{"1s", "1m", "1h"}
var resSeconds = [nRes]int64{1, 60, 3600}

// rollup is the content of one closed pane: what the store keeps.
type rollup struct {
	res     int
	start   int64
	count   int64
	bytes   int64
	lastSeq uint64
	items   []rollupItem
}

// dimCDT is the stored dimension of cdtKey (comm, dir, type), kept for the
// insight detector in 1m and 1h rollups of the main view.
const dimCDT = nDims

type rollupItem struct {
	dim   uint8
	key   string
	count int64
	bytes int64
}

// session is a burst of activity of one process (comm): events closer than
// the session gap in event time.
type session struct {
	key         string
	start, last int64
	count       int64
	bytes       int64
}

// Session is a closed session window of one process (comm).
type Session struct {
	Comm  string `json:"comm"`
	Start int64  `json:"start"` // Unix seconds of the first event
	End   int64  `json:"end"`   // Unix seconds of the last event
	Count int64  `json:"count"`
	Bytes int64  `json:"bytes"`
}

// view is one set of aggregates: the engine's own (every event as
// stored) or a token's (the events it may see, as it sees them).
type view struct {
	name string
	p    *auth.Principal // nil: every event, unredacted

	cfg     *Config
	sec     [secRing]*pane
	min     [minRing]*pane
	maxSec  int64 // largest event second added; -1 before any
	closed  int64 // second panes starting at or before closed are closed
	closedM int64 // minute panes starting at or before closedM are closed

	hourStart int64
	hour      map[rollupItemKey]*cb
	hourTot   cb
	hourSeq   uint64

	events, bytes int64

	sessions map[string]*session
	lastSess *session  // the session last counted, if still open
	gap      int64     // the session gap, seconds
	recent   []Session // closed sessions, oldest first, bounded

	// emit receives every closed pane's rollup, in order per resolution.
	emit func(v *view, r *rollup)

	// paths caches the path entries of the second panes' summaries.
	paths ssCache

	// The live frame's top lists, cached for a second.
	top    map[string][]TopItem
	topAt  time.Time
	topSec int64
}

type rollupItemKey struct {
	dim uint8
	key string
}

const recentSessions = 256

func newView(name string, p *auth.Principal, cfg *Config, withCDT bool, emit func(*view, *rollup)) *view {
	v := &view{name: name, p: p, cfg: cfg, maxSec: -1, closed: -1, closedM: -1, hourStart: -1,
		hour: make(map[rollupItemKey]*cb), sessions: make(map[string]*session), emit: emit,
		gap: int64(cfg.SessionGap.Seconds())}
	for i := range v.sec {
		v.sec[i] = newSecondPane(cfg.TopPaths, withCDT)
	}
	for i := range v.min {
		v.min[i] = newMinutePane(cfg.TopPaths, withCDT)
	}
	return v
}

func mod(a, n int64) int64 {
	m := a % n
	if m < 0 {
		m += n
	}
	return m
}

func minuteOf(sec int64) int64 { return sec - mod(sec, 60) }

// add folds s into the view's open second pane. s.sec is at or after
// the watermark (the engine clamps late events), so the pane is open; its
// minute gets it when the pane closes (advance).
func (v *view) add(s *sample) {
	if s.sec > v.maxSec {
		v.maxSec = s.sec
	}
	v.events++
	v.bytes += s.bytes
	p := v.sec[mod(s.sec, secRing)]
	if p.start != s.sec {
		p.resetTo(s.sec)
	}
	p.add(s, v.cfg.MaxKeys, &v.paths)
	v.session(s)
}

func (v *view) session(s *sample) {
	gap := v.gap
	ss, ok := v.lastSess, true
	if ss == nil || ss.key != s.comm {
		ss, ok = v.sessions[s.comm]
	}
	if ok && s.sec-ss.last > gap {
		v.closeSession(ss)
		ok = false
	}
	if !ok {
		if len(v.sessions) >= v.cfg.MaxKeys {
			return
		}
		ss = &session{key: s.comm, start: s.sec, last: s.sec}
		v.sessions[s.comm] = ss
	}
	v.lastSess = ss
	if s.sec > ss.last {
		ss.last = s.sec
	}
	ss.count++
	ss.bytes += s.bytes
}

func (v *view) closeSession(ss *session) {
	delete(v.sessions, ss.key)
	if v.lastSess == ss {
		v.lastSess = nil
	}
	if len(v.recent) == recentSessions {
		copy(v.recent, v.recent[1:])
		v.recent = v.recent[:len(v.recent)-1]
	}
	v.recent = append(v.recent, Session{Comm: ss.key, Start: ss.start, End: ss.last, Count: ss.count, Bytes: ss.bytes})
}

// advance closes every pane that ends at or before the watermark wm
// (Unix seconds): second panes starting before wm (each merged into its
// minute), minute panes ending by wm, the hour once its last minute is
// closed, and sessions idle for longer than the gap. Rollups are emitted
// in time order.
func (v *view) advance(wm int64) {
	if wm-1 <= v.closed {
		return
	}
	var open []*pane
	for _, p := range v.sec {
		if p.start > v.closed && p.start < wm {
			open = append(open, p)
		}
	}
	sort.Slice(open, func(i, j int) bool { return open[i].start < open[j].start })
	for _, p := range open {
		v.emitPane(res1s, p, false)
		v.mergeSecond(p)
	}
	v.closed = wm - 1
	open = open[:0]
	for _, p := range v.min {
		if p.start > v.closedM && p.start+60 <= wm {
			open = append(open, p)
		}
	}
	sort.Slice(open, func(i, j int) bool { return open[i].start < open[j].start })
	for _, p := range open {
		v.closeHourBefore(p.start)
		v.emitPane(res1m, p, true)
		v.addHour(p)
	}
	if m := minuteOf(wm) - 60; m > v.closedM {
		v.closedM = m
	}
	v.closeHourBefore(minuteOf(wm))
	for _, ss := range v.sessions {
		if ss.last+v.gap < wm {
			v.closeSession(ss)
		}
	}
}

// mergeSecond folds the closed second pane p into its minute pane.
func (v *view) mergeSecond(p *pane) {
	if p.count == 0 {
		return
	}
	m := minuteOf(p.start)
	q := v.min[mod(m/60, minRing)]
	if q.start != m {
		q.resetTo(m)
	}
	q.merge(p, v.cfg.MaxKeys)
}

// openSeconds returns the second panes not yet closed (and so not yet in
// their minute), with events.
func (v *view) openSeconds() []*pane {
	var out []*pane
	for _, p := range v.sec {
		if p.count > 0 && p.start > v.closed {
			out = append(out, p)
		}
	}
	return out
}

// openMinutes returns the rollups of the minutes not yet closed: each
// minute pane with the open seconds not yet merged into it.
func (v *view) openMinutes() []*rollup {
	byMin := make(map[int64][]*pane)
	for _, p := range v.min {
		if p.count > 0 && p.start > v.closedM {
			byMin[p.start] = append(byMin[p.start], p)
		}
	}
	for _, p := range v.openSeconds() {
		m := minuteOf(p.start)
		byMin[m] = append(byMin[m], p)
	}
	out := make([]*rollup, 0, len(byMin))
	for m, ps := range byMin {
		out = append(out, rollupOfPanes(res1m, m, ps))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	return out
}

// rollupOfPanes returns the rollup of the interval at start made of the
// panes ps (without the (comm, dir, type) items).
func rollupOfPanes(res int, start int64, ps []*pane) *rollup {
	if len(ps) == 1 {
		r := rollupOf(res, ps[0], false)
		r.start = start
		return r
	}
	r := &rollup{res: res, start: start}
	sum := make(map[rollupItemKey]*cb)
	for _, p := range ps {
		r.count += p.count
		r.bytes += p.bytes
		r.lastSeq = max(r.lastSeq, p.lastSeq)
		for d, m := range p.dims {
			for k, c := range m {
				ik := rollupItemKey{uint8(d), k}
				t, ok := sum[ik]
				if !ok {
					t = new(cb)
					sum[ik] = t
				}
				t.count += c.count
				t.bytes += c.bytes
			}
		}
	}
	for k, c := range sum {
		r.items = append(r.items, rollupItem{dim: k.dim, key: k.key, count: c.count, bytes: c.bytes})
	}
	sortItems(r.items)
	return r
}

// closeHourBefore emits the hour rollup when t lies in a later hour.
func (v *view) closeHourBefore(t int64) {
	if v.hourStart < 0 || t < v.hourStart+3600 {
		return
	}
	r := &rollup{res: res1h, start: v.hourStart, count: v.hourTot.count, bytes: v.hourTot.bytes, lastSeq: v.hourSeq}
	for k, c := range v.hour {
		r.items = append(r.items, rollupItem{dim: k.dim, key: k.key, count: c.count, bytes: c.bytes})
	}
	sortItems(r.items)
	clear(v.hour)
	v.hourTot = cb{}
	v.hourStart = -1
	if r.count > 0 {
		v.emit(v, r)
	}
}

func (v *view) addHour(p *pane) {
	if p.count == 0 {
		return
	}
	h := p.start - mod(p.start, 3600)
	if v.hourStart != h {
		v.closeHourBefore(h)
		v.hourStart = h
	}
	v.addHourRollup(rollupOf(res1m, p, true))
}

// addHourRollup folds a minute rollup into the open hour.
func (v *view) addHourRollup(r *rollup) {
	v.hourTot.count += r.count
	v.hourTot.bytes += r.bytes
	v.hourSeq = max(v.hourSeq, r.lastSeq)
	for _, it := range r.items {
		k := rollupItemKey{it.dim, it.key}
		c, ok := v.hour[k]
		if !ok {
			c = new(cb)
			v.hour[k] = c
		}
		c.count += it.count
		c.bytes += it.bytes
	}
}

func (v *view) emitPane(res int, p *pane, cdt bool) {
	if p.count == 0 {
		return
	}
	v.emit(v, rollupOf(res, p, cdt))
}

// rollupOf returns the rollup of p: of a closed pane (with the (comm,
// dir, type) items when cdt) or, for queries, of an open one.
func rollupOf(res int, p *pane, cdt bool) *rollup {
	r := &rollup{res: res, start: p.start, count: p.count, bytes: p.bytes, lastSeq: p.lastSeq}
	for d, m := range p.dims {
		for k, c := range m {
			r.items = append(r.items, rollupItem{dim: uint8(d), key: k, count: c.count, bytes: c.bytes})
		}
	}
	if cdt {
		for k, c := range p.cdt {
			r.items = append(r.items, rollupItem{dim: dimCDT, key: cdtString(k), count: c.count, bytes: c.bytes})
		}
	}
	sortItems(r.items)
	return r
}

func sortItems(items []rollupItem) {
	sort.Slice(items, func(i, j int) bool {
		if items[i].dim != items[j].dim {
			return items[i].dim < items[j].dim
		}
		return items[i].key < items[j].key
	})
}

const cdtSep = "\x1f"

func cdtString(k cdtKey) string { return k.comm + cdtSep + k.dir + cdtSep + k.typ }

// panes returns the panes of the sliding window of w seconds ending with
// the latest second seen: second panes up to secWindowMax, whole minutes
// beyond (the minute panes and the open seconds not yet in them).
func (v *view) panes(w int64) []*pane {
	if v.maxSec < 0 {
		return nil
	}
	var out []*pane
	if w <= secWindowMax {
		for _, p := range v.sec {
			if p.start > v.maxSec-w && p.start <= v.maxSec {
				out = append(out, p)
			}
		}
		return out
	}
	n := (w + 59) / 60
	last := minuteOf(v.maxSec)
	for _, p := range v.min {
		if p.start > last-n*60 && p.start <= last {
			out = append(out, p)
		}
	}
	for _, p := range v.openSeconds() {
		if p.start > last-n*60 {
			out = append(out, p)
		}
	}
	return out
}

// windowTotals returns the events and bytes of the window.
func (v *view) windowTotals(w int64) (n, b int64) {
	for _, p := range v.panes(w) {
		n += p.count
		b += p.bytes
	}
	return n, b
}

// topDim returns the k busiest keys of dimension dim over the window:
// exact (sums of exact per-pane counters).
func (v *view) topDim(dim int, w int64, k int) []keyCount {
	sum := make(map[string]*cb)
	for _, p := range v.panes(w) {
		for key, c := range p.dims[dim] {
			s, ok := sum[key]
			if !ok {
				s = new(cb)
				sum[key] = s
			}
			s.count += c.count
			s.bytes += c.bytes
		}
	}
	kcs := make([]keyCount, 0, len(sum))
	for key, c := range sum {
		kcs = append(kcs, keyCount{key: key, count: c.count, bytes: c.bytes})
	}
	return topOf(kcs, k)
}

// topPaths merges the panes' space-saving summaries: for each candidate
// key, a pane that does not monitor it contributes its minimum to both the
// count and the error, so count-err <= true <= count holds for the sum.
func (v *view) topPaths(w int64, k int) []keyCount {
	ps := v.panes(w)
	sum := make(map[string]*keyCount)
	for _, p := range ps {
		p.top().each(func(e ssCount) {
			s, ok := sum[e.key]
			if !ok {
				s = &keyCount{key: e.key}
				sum[e.key] = s
			}
			s.count += e.count
			s.bytes += e.bytes
			s.err += e.err
		})
	}
	kcs := make([]keyCount, 0, len(sum))
	for _, s := range sum {
		kcs = append(kcs, *s)
	}
	for i := range kcs {
		for _, p := range ps {
			t := p.top()
			if _, ok := t.get(kcs[i].key); !ok {
				m := t.min()
				kcs[i].count += m
				kcs[i].err += m
			}
		}
	}
	return topOf(kcs, k)
}

// Summary is the distribution side of a window: distinct paths and the
// quantiles of write sizes.
type Summary struct {
	Window        int64   `json:"window"` // seconds
	Events        int64   `json:"events"`
	Bytes         int64   `json:"bytes"`
	DistinctPaths uint64  `json:"distinct_paths"` // HyperLogLog, ±0.81% standard error
	WriteP50      float64 `json:"write_p50"`      // bytes per write, DDSketch, ±1% relative
	WriteP90      float64 `json:"write_p90"`
	WriteP99      float64 `json:"write_p99"`
}

func (v *view) summary(w int64) Summary {
	var h hll
	var d ddSketch
	s := Summary{Window: w}
	for _, p := range v.panes(w) {
		s.Events += p.count
		s.Bytes += p.bytes
		h.merge(p.distinct)
		d.merge(p.sizes)
	}
	s.DistinctPaths = h.estimate()
	s.WriteP50, s.WriteP90, s.WriteP99 = d.quantile(0.5), d.quantile(0.9), d.quantile(0.99)
	return s
}

// sessionsOf returns the recently closed sessions and the open ones.
func (v *view) sessionsOf() []Session {
	out := append([]Session(nil), v.recent...)
	for _, ss := range v.sessions {
		out = append(out, Session{Comm: ss.key, Start: ss.start, End: ss.last, Count: ss.count, Bytes: ss.bytes})
	}
	return out
}
