package cep

import (
	"container/heap"
	"fmt"
	"strconv"
	"time"

	"github.com/semprop/semprop/event"
)

// Options configure an Engine.
type Options struct {
	// Lateness is how far behind the newest event time an event may be
	// and still be matched. Events are matched in event-time order once
	// the watermark (newest event time minus Lateness) passes them; an
	// event older than the watermark when it arrives is dropped as late
	// and counted. 0 means events must arrive in time order.
	Lateness time.Duration
	// Limits bound each pattern's state.
	Limits Limits
	// OriginAttr, if set, names the extension attribute that carries the
	// name of the rule that produced an event: a pattern never sees an
	// event whose OriginAttr is its own name.
	OriginAttr string
	// DepthAttr, if set, names the extension attribute that carries an
	// event's match depth (0 when absent); MaxDepth > 0 hides events of
	// that depth or more from every pattern.
	DepthAttr string
	MaxDepth  int
}

// Engine matches patterns over an event stream. One automaton runs per
// pattern and key. An Engine is not safe for concurrent use: one goroutine
// feeds it (the rules runner serializes access).
type Engine struct {
	opts  Options
	rules []*rule

	byType  map[string][]int32 // rules interested in a type
	anyType []int32            // rules interested in every type
	scratch []int32

	started bool
	t0      int64 // time of the first event: global absent patterns start here
	maxTime int64 // newest event time seen
	floor   int64 // the watermark never goes below this (Flush, AdvanceTo)
	late    uint64

	buf    evHeap    // accepted events waiting for the watermark
	timers timerHeap // deadlines of not_followed_by and absent patterns

	out []Match
}

// New returns an engine for patterns, which it keeps (they must not be
// modified afterwards).
func New(patterns []*Pattern, opts Options) (*Engine, error) {
	opts.Limits = opts.Limits.withDefaults()
	e := &Engine{opts: opts, floor: minTime}
	seen := make(map[string]bool, len(patterns))
	for _, p := range patterns {
		if err := p.validate(); err != nil {
			return nil, err
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("%s: duplicate name: %w", p.Name, ErrPattern)
		}
		seen[p.Name] = true
		e.rules = append(e.rules, newRule(p, opts.Limits))
	}
	e.index()
	return e, nil
}

const minTime = -1 << 63

func (e *Engine) index() {
	e.byType = make(map[string][]int32)
	e.anyType = nil
	for i, r := range e.rules {
		r.idx = int32(i)
		if r.p.Types == nil {
			e.anyType = append(e.anyType, int32(i))
			continue
		}
		for _, t := range r.p.Types {
			if l := e.byType[t]; len(l) == 0 || l[len(l)-1] != int32(i) {
				e.byType[t] = append(l, int32(i))
			}
		}
	}
}

// Len returns the number of patterns.
func (e *Engine) Len() int { return len(e.rules) }

// Pattern returns the i-th pattern.
func (e *Engine) Pattern(i int) *Pattern { return e.rules[i].p }

// Counters returns the counters of the i-th pattern.
func (e *Engine) Counters(i int) Counters {
	r := e.rules[i]
	c := r.c
	c.Keys = len(r.keys)
	for _, ks := range r.keys {
		c.Partials += ks.size()
	}
	return c
}

// Late returns the number of events dropped as late.
func (e *Engine) Late() uint64 { return e.late }

// Watermark returns the current watermark in Unix nanoseconds: events
// older than it are late. It is math.MinInt64 before the first event.
func (e *Engine) Watermark() int64 {
	if !e.started {
		return e.floor
	}
	return max(e.maxTime-int64(e.opts.Lateness), e.floor)
}

// Wants reports whether any pattern could be interested in an event of
// type typ.
func (e *Engine) Wants(typ string) bool {
	return len(e.anyType) > 0 || len(e.byType[typ]) > 0
}

// Process feeds one event and returns the matches it completed or whose
// timers it let fire, in order. The returned slice is valid until the next
// call. The engine keeps ev while a partial match holds it: the caller must
// not modify it afterwards. Events must have distinct seqs.
func (e *Engine) Process(ev *event.Event) []Match {
	e.out = e.out[:0]
	t := ev.Time.UnixNano()
	if !e.started {
		e.start(t)
	}
	var rs []int32
	if len(e.anyType) == 0 {
		rs = e.byType[ev.Type]
		if len(rs) == 0 {
			// The common case: no pattern wants this type. Only the
			// watermark moves.
			if t > e.maxTime {
				e.maxTime = t
				if w := e.Watermark(); len(e.timers) > 0 && e.timers[0].at < w || len(e.buf) > 0 {
					e.advance(w)
				}
			} else if t < e.Watermark() {
				e.late++
			}
			return e.out
		}
	} else {
		rs = e.dispatch(ev.Type)
	}
	if t < e.Watermark() {
		e.late++
		for _, i := range rs {
			e.rules[i].c.Late++
		}
		return e.out
	}
	if t > e.maxTime {
		e.maxTime = t
	}
	if e.opts.Lateness == 0 && len(e.buf) == 0 {
		// In order: fire what is due before t, then match ev now.
		if len(e.timers) > 0 && e.timers[0].at < t {
			e.advance(t)
		}
		e.apply(ev, t, rs)
		return e.out
	}
	heap.Push(&e.buf, ev)
	e.advance(e.Watermark())
	return e.out
}

// AdvanceTo moves the watermark to at least w (Unix nanoseconds) without an
// event, e.g. on a processing-time tick when the stream is idle, and
// returns the matches whose timers fire. Events older than the new
// watermark are late from then on.
func (e *Engine) AdvanceTo(w int64) []Match {
	e.out = e.out[:0]
	if !e.started {
		return e.out
	}
	e.floor = max(e.floor, w)
	e.advance(e.Watermark())
	return e.out
}

// Flush matches every buffered event and fires every timer due before the
// newest event time, as at the end of a recorded stream. Timers due later
// do not fire: nothing is known about the time after the last event.
func (e *Engine) Flush() []Match {
	if !e.started {
		e.out = e.out[:0]
		return e.out
	}
	return e.AdvanceTo(e.maxTime)
}

func (e *Engine) start(t int64) {
	e.started = true
	e.t0, e.maxTime = t, t
	for _, r := range e.rules {
		e.armGlobal(r, t)
	}
}

// armGlobal arms an absent pattern without a key at time t.
func (e *Engine) armGlobal(r *rule, t int64) {
	if r.p.Kind != KindAbsent || r.p.By != nil {
		return
	}
	ks := r.get("", t)
	ks.armed, ks.deadline = true, t+int64(r.p.Within)
	e.pushTimer(ks.deadline, r, 0, "", nil)
}

// dispatch returns the patterns interested in typ, in order.
func (e *Engine) dispatch(typ string) []int32 {
	l := e.byType[typ]
	if len(e.anyType) == 0 {
		return l
	}
	if len(l) == 0 {
		return e.anyType
	}
	out := e.scratch[:0]
	a, b := l, e.anyType
	for len(a) > 0 && len(b) > 0 {
		if a[0] < b[0] {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	out = append(append(out, a...), b...)
	e.scratch = out
	return out
}

// advance processes buffered events up to w and fires timers due before
// w, in event-time order: a timer due at D fires after every event at D
// and before any event after D.
func (e *Engine) advance(w int64) {
	for {
		haveT := len(e.timers) > 0 && e.timers[0].at < w
		var head *event.Event
		if len(e.buf) > 0 && e.buf[0].Time.UnixNano() <= w {
			head = e.buf[0]
		}
		switch {
		case haveT && (head == nil || head.Time.UnixNano() > e.timers[0].at):
			e.fire(heap.Pop(&e.timers).(timer))
		case head != nil:
			heap.Pop(&e.buf)
			t := head.Time.UnixNano()
			e.apply(head, t, e.dispatch(head.Type))
		default:
			return
		}
	}
}

// apply shows ev to the patterns rs.
func (e *Engine) apply(ev *event.Event, t int64, rs []int32) {
	depth := 0
	if len(ev.Attrs) > 0 && e.opts.DepthAttr != "" {
		depth = e.depth(ev)
		if e.opts.MaxDepth > 0 && depth >= e.opts.MaxDepth {
			return
		}
	}
	for _, i := range rs {
		r := e.rules[i]
		if len(ev.Attrs) > 0 && e.opts.OriginAttr != "" {
			if v, ok := ev.Attr(e.opts.OriginAttr); ok && v == r.p.Name {
				continue
			}
		}
		r.c.Events++
		if r.c.Events&63 == 0 {
			start := time.Now()
			e.step(r, ev, t)
			r.c.EvalNanos += uint64(time.Since(start)) * 64
			continue
		}
		e.step(r, ev, t)
	}
}

func (e *Engine) depth(ev *event.Event) int {
	if e.opts.DepthAttr == "" {
		return 0
	}
	v, ok := ev.Attr(e.opts.DepthAttr)
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// emit applies the cooldown and the rate limit to a match of r and, if it
// passes, appends it to the output. evs is copied.
func (e *Engine) emit(r *rule, ks *keyState, key string, evs []*event.Event, at int64) {
	p := r.p
	if p.Cooldown > 0 && ks != nil {
		if ks.matched && at-ks.lastMatch < int64(p.Cooldown) {
			r.c.Suppressed++
			return
		}
		ks.matched, ks.lastMatch = true, at
	}
	if p.MaxRate > 0 {
		period := int64(p.RatePeriod)
		if period <= 0 {
			period = int64(time.Minute)
		}
		win := floorDiv(at, period)
		if win != r.rateWin {
			r.rateWin, r.rateN = win, 0
		}
		r.rateN++
		if r.rateN > p.MaxRate {
			r.c.Throttled++
			if r.rateN == p.MaxRate+1 {
				e.out = append(e.out, Match{Rule: int(r.idx), Pattern: p.Name, Key: key, Time: at, Throttled: true, Depth: 1})
			}
			return
		}
	}
	r.c.Matches++
	m := Match{Rule: int(r.idx), Pattern: p.Name, Key: key, Time: at, Events: append([]*event.Event(nil), evs...)}
	for _, ev := range m.Events {
		m.Depth = max(m.Depth, e.depth(ev))
	}
	m.Depth++
	e.out = append(e.out, m)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// fire handles a due timer.
func (e *Engine) fire(tm timer) {
	r := e.rules[tm.rule]
	ks := r.keys[tm.key]
	if ks == nil {
		return
	}
	switch r.p.Kind {
	case KindNotFollowedBy:
		for i, ev := range ks.evs {
			if ev == tm.ev {
				ks.evs = append(ks.evs[:i], ks.evs[i+1:]...)
				e.emit(r, ks, tm.key, []*event.Event{ev}, tm.at)
				r.settle(ks)
				return
			}
		}
	case KindAbsent:
		if !ks.armed {
			return
		}
		if ks.deadline > tm.at {
			e.pushTimer(ks.deadline, r, seqOf(ks.evs), tm.key, nil)
			return
		}
		ks.armed = false
		e.emit(r, ks, tm.key, ks.evs, tm.at)
		r.settle(ks)
	}
}

func seqOf(evs []*event.Event) uint64 {
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Seq
}

func (e *Engine) pushTimer(at int64, r *rule, seq uint64, key string, ev *event.Event) {
	heap.Push(&e.timers, timer{at: at, rule: r.idx, seq: seq, key: key, ev: ev})
}

// timer is a deadline of one pattern and key; for not_followed_by, of one
// trigger (ev). Timers are never removed early: a stale one is ignored
// when it fires. Due timers fire in (deadline, pattern, key, seq) order.
type timer struct {
	at   int64
	rule int32
	seq  uint64
	key  string
	ev   *event.Event
}

type timerHeap []timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	a, b := &h[i], &h[j]
	if a.at != b.at {
		return a.at < b.at
	}
	if a.rule != b.rule {
		return a.rule < b.rule
	}
	if a.key != b.key {
		return a.key < b.key
	}
	return a.seq < b.seq
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = timer{}
	*h = old[:len(old)-1]
	return t
}

// evHeap orders buffered events by (time, seq).
type evHeap []*event.Event

func (h evHeap) Len() int { return len(h) }
func (h evHeap) Less(i, j int) bool {
	ti, tj := h[i].Time.UnixNano(), h[j].Time.UnixNano()
	if ti != tj {
		return ti < tj
	}
	return h[i].Seq < h[j].Seq
}
func (h evHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *evHeap) Push(x any)   { *h = append(*h, x.(*event.Event)) }
func (h *evHeap) Pop() any {
	old := *h
	ev := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return ev
}
