package cep

import (
	"container/heap"
	"encoding/json"
	"fmt"

	"github.com/semprop/semprop/event"
)

// snapshot is the serialized state of an Engine. Events are stored once,
// in a table, and referred to by index.
type snapshot struct {
	Version int         `json:"v"`
	Started bool        `json:"started"`
	T0      int64       `json:"t0"`
	MaxTime int64       `json:"max_time"`
	Floor   int64       `json:"floor"`
	Late    uint64      `json:"late"`
	Events  []snapEvent `json:"events,omitempty"`
	Buf     []int       `json:"buf,omitempty"`
	Rules   []snapRule  `json:"rules"`
	Timers  []snapTimer `json:"timers,omitempty"`

	index map[*event.Event]int // while writing: the event table's index
}

type snapEvent struct {
	Seq uint64 `json:"seq"`
	Bin []byte `json:"bin"`
}

type snapRule struct {
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint"`
	Counters    Counters  `json:"counters"`
	RateWin     int64     `json:"rate_win"`
	RateN       int       `json:"rate_n"`
	Keys        []snapKey `json:"keys,omitempty"` // least recently active first
}

type snapKey struct {
	Key       string   `json:"key"`
	Last      int64    `json:"last"`
	Matched   bool     `json:"matched,omitempty"`
	LastMatch int64    `json:"last_match,omitempty"`
	Evs       []int    `json:"evs,omitempty"`
	Vals      []string `json:"vals,omitempty"`
	Parts     [][]int  `json:"parts,omitempty"`
	Armed     bool     `json:"armed,omitempty"`
	Deadline  int64    `json:"deadline,omitempty"`
}

type snapTimer struct {
	At   int64  `json:"at"`
	Rule string `json:"rule"`
	Seq  uint64 `json:"seq"`
	Key  string `json:"key"`
	Ev   int    `json:"ev"` // -1: none
}

const snapVersion = 1

func (s *snapshot) ref(ev *event.Event) (int, error) {
	if i, ok := s.index[ev]; ok {
		return i, nil
	}
	b, err := ev.MarshalBinary()
	if err != nil {
		return 0, fmt.Errorf("cep: snapshot event seq %d: %w", ev.Seq, err)
	}
	i := len(s.Events)
	s.Events = append(s.Events, snapEvent{Seq: ev.Seq, Bin: b})
	s.index[ev] = i
	return i, nil
}

func (s *snapshot) refs(evs []*event.Event) ([]int, error) {
	out := make([]int, len(evs))
	for i, ev := range evs {
		var err error
		if out[i], err = s.ref(ev); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Snapshot serializes the engine's state: watermark, buffered events,
// timers and every pattern's automata and counters. Restore on an engine
// with the same patterns resumes exactly where this one stands.
func (e *Engine) Snapshot() ([]byte, error) {
	s := &snapshot{Version: snapVersion, Started: e.started, T0: e.t0, MaxTime: e.maxTime,
		Floor: e.floor, Late: e.late, index: make(map[*event.Event]int)}
	var err error
	if s.Buf, err = s.refs(e.buf); err != nil {
		return nil, err
	}
	for _, r := range e.rules {
		sr := snapRule{Name: r.p.Name, Fingerprint: r.p.Fingerprint, Counters: r.c, RateWin: r.rateWin, RateN: r.rateN}
		for ks := r.lru.prev; ks != &r.lru; ks = ks.prev {
			sk := snapKey{Key: ks.key, Last: ks.last, Matched: ks.matched, LastMatch: ks.lastMatch,
				Vals: ks.vals, Armed: ks.armed, Deadline: ks.deadline}
			if sk.Evs, err = s.refs(ks.evs); err != nil {
				return nil, err
			}
			for _, pm := range ks.parts {
				ix, err := s.refs(pm.evs)
				if err != nil {
					return nil, err
				}
				sk.Parts = append(sk.Parts, ix)
			}
			sr.Keys = append(sr.Keys, sk)
		}
		s.Rules = append(s.Rules, sr)
	}
	for _, tm := range e.timers {
		st := snapTimer{At: tm.at, Rule: e.rules[tm.rule].p.Name, Seq: tm.seq, Key: tm.key, Ev: -1}
		if tm.ev != nil {
			if st.Ev, err = s.ref(tm.ev); err != nil {
				return nil, err
			}
		}
		s.Timers = append(s.Timers, st)
	}
	return json.Marshal(s)
}

// Restore replaces the engine's state with a snapshot. The state of a
// pattern is restored only if the snapshot has a pattern with the same
// name and a non-empty, equal fingerprint, or, when neither has a
// fingerprint, the same name; other patterns start empty (absent patterns
// without a key are armed at the snapshot's newest event time).
func (e *Engine) Restore(data []byte) error {
	var s snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	if s.Version != snapVersion {
		return fmt.Errorf("%w: version %d", ErrSnapshot, s.Version)
	}
	table := make([]*event.Event, len(s.Events))
	for i, se := range s.Events {
		ev := new(event.Event)
		if err := ev.UnmarshalBinary(se.Bin); err != nil {
			return fmt.Errorf("%w: event %d: %w", ErrSnapshot, i, err)
		}
		ev.Seq = se.Seq
		table[i] = ev
	}
	get := func(ix []int) ([]*event.Event, error) {
		out := make([]*event.Event, len(ix))
		for i, j := range ix {
			if j < 0 || j >= len(table) {
				return nil, fmt.Errorf("%w: event index %d", ErrSnapshot, j)
			}
			out[i] = table[j]
		}
		return out, nil
	}
	fresh, err := New(e.patterns(), e.opts)
	if err != nil {
		return err
	}
	fresh.started, fresh.t0, fresh.maxTime, fresh.floor, fresh.late = s.Started, s.T0, s.MaxTime, s.Floor, s.Late
	if fresh.buf, err = get(s.Buf); err != nil {
		return err
	}
	heap.Init(&fresh.buf)
	kept := make(map[string]*rule)
	for _, sr := range s.Rules {
		var r *rule
		for _, cand := range fresh.rules {
			if cand.p.Name == sr.Name && cand.p.Fingerprint == sr.Fingerprint {
				r = cand
			}
		}
		if r == nil {
			continue
		}
		kept[r.p.Name] = r
		r.c, r.rateWin, r.rateN = sr.Counters, sr.RateWin, sr.RateN
		r.c.Keys, r.c.Partials = 0, 0
		for _, sk := range sr.Keys {
			ks := &keyState{key: sk.Key, last: sk.Last, matched: sk.Matched, lastMatch: sk.LastMatch,
				vals: sk.Vals, armed: sk.Armed, deadline: sk.Deadline}
			if ks.evs, err = get(sk.Evs); err != nil {
				return err
			}
			for _, ix := range sk.Parts {
				evs, err := get(ix)
				if err != nil {
					return err
				}
				if len(evs) == 0 || len(evs) >= len(r.p.Steps) {
					return fmt.Errorf("%w: partial match of %d events", ErrSnapshot, len(evs))
				}
				ks.parts = append(ks.parts, partial{start: evs[0].Time.UnixNano(), evs: evs})
			}
			if _, dup := r.keys[ks.key]; dup {
				return fmt.Errorf("%w: duplicate key %q", ErrSnapshot, ks.key)
			}
			r.keys[ks.key] = ks
			r.pushFront(ks)
		}
	}
	for _, st := range s.Timers {
		r := kept[st.Rule]
		if r == nil {
			continue
		}
		tm := timer{at: st.At, rule: r.idx, seq: st.Seq, key: st.Key}
		if st.Ev >= 0 {
			evs, err := get([]int{st.Ev})
			if err != nil {
				return err
			}
			tm.ev = evs[0]
		}
		fresh.timers = append(fresh.timers, tm)
	}
	heap.Init(&fresh.timers)
	if fresh.started {
		for _, r := range fresh.rules {
			if kept[r.p.Name] == nil {
				fresh.armGlobal(r, fresh.maxTime)
			}
		}
	}
	*e = *fresh
	return nil
}

func (e *Engine) patterns() []*Pattern {
	ps := make([]*Pattern, len(e.rules))
	for i, r := range e.rules {
		ps[i] = r.p
	}
	return ps
}

// Replace swaps the engine's patterns for ps, atomically from the
// caller's point of view: a pattern of ps with the same name and a
// non-empty fingerprint equal to one in the engine keeps its automata,
// timers and counters; the others start empty. On error the engine is
// unchanged.
func (e *Engine) Replace(ps []*Pattern) error {
	fresh, err := New(ps, e.opts)
	if err != nil {
		return err
	}
	old := make(map[string]*rule, len(e.rules))
	for _, r := range e.rules {
		old[r.p.Name] = r
	}
	remap := make(map[int32]int32)
	for i, r := range fresh.rules {
		o := old[r.p.Name]
		if o == nil || o.p.Fingerprint == "" || o.p.Fingerprint != r.p.Fingerprint {
			continue
		}
		remap[o.idx] = int32(i)
		o.p, o.idx = r.p, int32(i)
		fresh.rules[i] = o
	}
	fresh.started, fresh.t0, fresh.maxTime, fresh.floor, fresh.late = e.started, e.t0, e.maxTime, e.floor, e.late
	fresh.buf = e.buf
	for _, tm := range e.timers {
		if i, ok := remap[tm.rule]; ok {
			tm.rule = i
			fresh.timers = append(fresh.timers, tm)
		}
	}
	heap.Init(&fresh.timers)
	if fresh.started {
		for i, r := range fresh.rules {
			if _, ok := remapHas(remap, int32(i)); !ok {
				fresh.armGlobal(r, fresh.maxTime)
			}
		}
	}
	*e = *fresh
	return nil
}

func remapHas(m map[int32]int32, v int32) (int32, bool) {
	for k, x := range m {
		if x == v {
			return k, true
		}
	}
	return 0, false
}
