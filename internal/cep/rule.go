package cep

import (
	"github.com/semprop/semprop/event"
)

// rule is a pattern with its state: one automaton per key.
type rule struct {
	p       *Pattern
	idx     int32
	limits  Limits
	horizon int64 // see Pattern.horizon

	keys map[string]*keyState
	lru  keyState // sentinel of the list of keys, most recently active first

	c       Counters
	rateWin int64
	rateN   int
}

func newRule(p *Pattern, l Limits) *rule {
	r := &rule{p: p, limits: l, horizon: p.horizon(), keys: make(map[string]*keyState)}
	if p.Kind == KindCount && r.limits.MaxPartials < p.Count {
		r.limits.MaxPartials = p.Count
	}
	r.lru.prev, r.lru.next = &r.lru, &r.lru
	r.rateWin = minTime
	return r
}

// keyState is the automaton of one pattern for one key.
type keyState struct {
	key        string
	prev, next *keyState
	last       int64 // event time of the last activity

	matched   bool // an emitted match exists (for the cooldown)
	lastMatch int64

	// evs: count: the window (or the latest event per distinct value,
	// vals holding the values); not_followed_by: pending triggers;
	// absent: the last awaited event.
	evs  []*event.Event
	vals []string
	// parts: sequence partial matches, oldest first.
	parts []partial
	// absent: armed until the deadline fires.
	armed    bool
	deadline int64
}

type partial struct {
	start int64
	evs   []*event.Event
}

func (ks *keyState) size() int {
	if len(ks.parts) > 0 {
		return len(ks.parts)
	}
	return len(ks.evs)
}

func (r *rule) unlink(ks *keyState) {
	ks.prev.next, ks.next.prev = ks.next, ks.prev
}

func (r *rule) pushFront(ks *keyState) {
	ks.prev, ks.next = &r.lru, r.lru.next
	r.lru.next.prev = ks
	r.lru.next = ks
}

// get returns the state of key, creating it (and evicting the least
// recently active key if MaxKeys is reached), marked active at t.
func (r *rule) get(key string, t int64) *keyState {
	ks := r.keys[key]
	if ks == nil {
		if len(r.keys) >= r.limits.MaxKeys {
			old := r.lru.prev
			r.remove(old)
			r.c.KeysEvicted++
		}
		ks = &keyState{key: key}
		r.keys[key] = ks
	} else {
		r.unlink(ks)
	}
	ks.last = max(ks.last, t)
	r.pushFront(ks)
	return ks
}

func (r *rule) touch(ks *keyState, t int64) {
	r.unlink(ks)
	ks.last = max(ks.last, t)
	r.pushFront(ks)
}

func (r *rule) remove(ks *keyState) {
	r.unlink(ks)
	delete(r.keys, ks.key)
}

// settle removes a key whose automaton holds nothing that can matter.
func (r *rule) settle(ks *keyState) {
	if ks.armed || len(ks.evs) > 0 && r.p.Kind != KindAbsent || len(ks.parts) > 0 {
		return
	}
	if ks.matched && r.p.Cooldown > 0 {
		return // the idle purge removes it once the cooldown is over
	}
	r.remove(ks)
}

// purge removes the keys idle for longer than the horizon before w.
func (r *rule) purge(w int64) {
	if r.horizon < 0 {
		return
	}
	for tail := r.lru.prev; tail != &r.lru && tail.last+r.horizon < w; tail = r.lru.prev {
		r.remove(tail)
		r.c.Purged++
	}
}

// step shows ev (at time t) to rule r.
func (e *Engine) step(r *rule, ev *event.Event, t int64) {
	p := r.p
	r.purge(t)
	// The key is computed only when needed: when the event is accepted or
	// the pattern has state that the event could advance or cancel.
	keyOf := func() string {
		if p.By == nil {
			return ""
		}
		return p.By(ev)
	}
	var key string
	switch p.Kind {
	case KindSingle:
		if !p.Steps[0].Match(ev, nil) {
			return
		}
		key = keyOf()
		if p.Cooldown == 0 {
			e.emit(r, nil, key, []*event.Event{ev}, t)
			return
		}
		ks := r.get(key, t)
		e.emit(r, ks, key, []*event.Event{ev}, t)
		r.settle(ks)

	case KindCount:
		if !p.Steps[0].Match(ev, nil) {
			return
		}
		key = keyOf()
		ks := r.get(key, t)
		if p.Distinct != nil {
			v := p.Distinct(ev)
			for i, old := range ks.vals {
				if old == v {
					ks.vals = append(ks.vals[:i], ks.vals[i+1:]...)
					ks.evs = append(ks.evs[:i], ks.evs[i+1:]...)
					break
				}
			}
			ks.vals = append(ks.vals, v)
		}
		ks.evs = append(ks.evs, ev)
		drop := 0
		if w := int64(p.Within); w > 0 {
			for drop < len(ks.evs) && t-ks.evs[drop].Time.UnixNano() > w {
				drop++
			}
		}
		if over := len(ks.evs) - drop - r.limits.MaxPartials; over > 0 {
			drop += over
			r.c.Evicted += uint64(over)
		}
		if drop > 0 {
			ks.evs = ks.evs[:copy(ks.evs, ks.evs[drop:])]
			if p.Distinct != nil {
				ks.vals = ks.vals[:copy(ks.vals, ks.vals[drop:])]
			}
		}
		if len(ks.evs) >= p.Count {
			evs := ks.evs
			ks.evs, ks.vals = ks.evs[:0], ks.vals[:0]
			e.emit(r, ks, key, evs, t)
			clear(evs)
		}
		r.settle(ks)

	case KindSequence:
		var ks *keyState
		if len(r.keys) > 0 {
			key = keyOf()
			ks = r.keys[key]
		}
		if ks != nil {
			if w := int64(p.Within); w > 0 {
				drop := 0
				for drop < len(ks.parts) && t-ks.parts[drop].start > w {
					drop++
				}
				if drop > 0 {
					clear(ks.parts[:drop])
					ks.parts = ks.parts[:copy(ks.parts, ks.parts[drop:])]
				}
			}
			for i := range ks.parts {
				pm := &ks.parts[i]
				n := len(pm.evs)
				if !p.Steps[n].Match(ev, pm.evs) {
					continue
				}
				pm.evs = append(pm.evs, ev)
				if n+1 == len(p.Steps) {
					// Skip past the last event: every partial match
					// of this key started before it is dropped.
					evs := pm.evs
					clear(ks.parts)
					ks.parts = ks.parts[:0]
					r.touch(ks, t)
					e.emit(r, ks, key, evs, t)
					r.settle(ks)
					return
				}
			}
		}
		if p.Steps[0].Match(ev, nil) {
			if ks == nil {
				key = keyOf()
			}
			ks = r.get(key, t)
			if len(ks.parts) >= r.limits.MaxPartials {
				ks.parts[0] = partial{}
				ks.parts = ks.parts[:copy(ks.parts, ks.parts[1:])]
				r.c.Evicted++
			}
			ks.parts = append(ks.parts, partial{start: t, evs: []*event.Event{ev}})
		} else if ks != nil {
			if len(ks.parts) > 0 {
				r.touch(ks, t)
			}
			r.settle(ks)
		}

	case KindNotFollowedBy:
		var ks *keyState
		if len(r.keys) > 0 {
			key = keyOf()
			ks = r.keys[key]
		}
		if ks != nil {
			n := 0
			for i, trig := range ks.evs {
				if !p.Not.Match(ev, ks.evs[i:i+1]) {
					ks.evs[n] = trig
					n++
				}
			}
			clear(ks.evs[n:])
			ks.evs = ks.evs[:n]
		}
		if p.Steps[0].Match(ev, nil) {
			if ks == nil {
				key = keyOf()
			}
			ks = r.get(key, t)
			if len(ks.evs) >= r.limits.MaxPartials {
				ks.evs = ks.evs[:copy(ks.evs, ks.evs[1:])]
				r.c.Evicted++
			}
			ks.evs = append(ks.evs, ev)
			e.pushTimer(t+int64(p.Within), r, ev.Seq, key, ev)
		} else if ks != nil {
			r.settle(ks)
		}

	case KindAbsent:
		if !p.Steps[0].Match(ev, nil) {
			return
		}
		key = keyOf()
		ks := r.get(key, t)
		ks.evs = append(ks.evs[:0], ev)
		d := t + int64(p.Within)
		if !ks.armed {
			ks.armed, ks.deadline = true, d
			e.pushTimer(d, r, ev.Seq, key, nil)
		} else if d > ks.deadline {
			ks.deadline = d
		}
	}
}
