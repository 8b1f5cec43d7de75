package cep

import (
	"cmp"
	"slices"

	"github.com/semprop/semprop/event"
)

// refMatch is a match as the reference matcher reports it.
type refMatch struct {
	Rule string
	Key  string
	Time int64
	Seqs []uint64
	// Throttled marks the notice of a throttled rule.
	Throttled bool
}

func refOf(m Match) refMatch {
	r := refMatch{Rule: m.Pattern, Key: m.Key, Time: m.Time, Throttled: m.Throttled}
	if len(m.Events) > 0 {
		r.Seqs = m.Seqs()
	}
	return r
}

func lastSeq(m refMatch) uint64 {
	if len(m.Seqs) == 0 {
		return 0
	}
	return m.Seqs[len(m.Seqs)-1]
}

func cmpRef(a, b refMatch) int {
	return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Time, b.Time),
		cmp.Compare(lastSeq(a), lastSeq(b)), cmp.Compare(a.Key, b.Key), slices.Compare(a.Seqs, b.Seqs))
}

// reference computes the matches of patterns over events (in arrival order)
// by brute force, written for clarity rather than speed, as the engine
// documents them: late events dropped, the rest taken in (time, seq) order,
// windows inclusive, timers firing only once a later event exists, skip
// past the last event, then the cooldown per key and the rate limit per
// pattern. It ignores state limits.
func reference(patterns []*Pattern, arrivals []*event.Event, lateness int64) []refMatch {
	if len(arrivals) == 0 {
		return nil
	}
	// Lateness: an event older than the newest time seen before it, minus
	// the lateness, is dropped.
	t0 := tm(arrivals[0])
	maxT := t0
	var s []*event.Event
	for _, ev := range arrivals {
		if tm(ev) < maxT-lateness {
			continue
		}
		maxT = max(maxT, tm(ev))
		s = append(s, ev)
	}
	slices.SortStableFunc(s, func(a, b *event.Event) int {
		return cmp.Or(cmp.Compare(tm(a), tm(b)), cmp.Compare(a.Seq, b.Seq))
	})
	var out []refMatch
	for _, p := range patterns {
		raw := refRaw(p, s, t0, maxT)
		out = append(out, refLimit(p, raw)...)
	}
	slices.SortFunc(out, cmpRef)
	return out
}

func tm(ev *event.Event) int64 { return ev.Time.UnixNano() }

func keyOf(p *Pattern, ev *event.Event) string {
	if p.By == nil {
		return ""
	}
	return p.By(ev)
}

func seqs(evs []*event.Event) []uint64 {
	if len(evs) == 0 {
		return nil
	}
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Seq
	}
	return out
}

func refRaw(p *Pattern, s []*event.Event, t0, maxT int64) []refMatch {
	w := int64(p.Within)
	var out []refMatch
	add := func(key string, at int64, evs []*event.Event) {
		out = append(out, refMatch{Rule: p.Name, Key: key, Time: at, Seqs: seqs(evs)})
	}
	keys := map[string]bool{}
	for _, ev := range s {
		keys[keyOf(p, ev)] = true
	}
	switch p.Kind {
	case KindSingle:
		for _, ev := range s {
			if p.Steps[0].Match(ev, nil) {
				add(keyOf(p, ev), tm(ev), []*event.Event{ev})
			}
		}
	case KindCount:
		for k := range keys {
			last := -1 // position of the last match's event
			for j, ev := range s {
				if keyOf(p, ev) != k || !p.Steps[0].Match(ev, nil) {
					continue
				}
				var win []*event.Event
				for i := last + 1; i <= j; i++ {
					e := s[i]
					if keyOf(p, e) == k && p.Steps[0].Match(e, nil) && (w == 0 || tm(ev)-tm(e) <= w) {
						win = append(win, e)
					}
				}
				if p.Distinct != nil {
					// The latest event of each value, in stream order.
					var kept []*event.Event
					for i, e := range win {
						later := false
						for _, f := range win[i+1:] {
							if p.Distinct(f) == p.Distinct(e) {
								later = true
							}
						}
						if !later {
							kept = append(kept, e)
						}
					}
					win = kept
				}
				if len(win) >= p.Count {
					add(k, tm(ev), win)
					last = j
				}
			}
		}
	case KindSequence:
		for k := range keys {
			last := -1
			for {
				bestC, bestS := -1, -1
				var bestEvs []*event.Event
				for st := last + 1; st < len(s); st++ {
					if keyOf(p, s[st]) != k || !p.Steps[0].Match(s[st], nil) {
						continue
					}
					// The greedy run from this start: each step takes
					// the next event of the key it accepts.
					bound := []*event.Event{s[st]}
					c := -1
					for j := st + 1; j < len(s) && c < 0; j++ {
						e := s[j]
						if keyOf(p, e) != k {
							continue
						}
						if w > 0 && tm(e)-tm(s[st]) > w {
							break
						}
						if p.Steps[len(bound)].Match(e, bound) {
							bound = append(bound, e)
							if len(bound) == len(p.Steps) {
								c = j
							}
						}
					}
					if c >= 0 && (bestC < 0 || c < bestC) {
						bestC, bestS, bestEvs = c, st, bound
					}
				}
				if bestC < 0 {
					break
				}
				_ = bestS
				add(k, tm(s[bestC]), bestEvs)
				last = bestC
			}
		}
	case KindNotFollowedBy:
		for i, trig := range s {
			if !p.Steps[0].Match(trig, nil) {
				continue
			}
			k := keyOf(p, trig)
			d := tm(trig) + w
			cancelled := false
			for _, e := range s[i+1:] {
				if keyOf(p, e) == k && tm(e) <= d && p.Not.Match(e, []*event.Event{trig}) {
					cancelled = true
				}
			}
			if !cancelled && maxT > d {
				add(k, d, []*event.Event{trig})
			}
		}
	case KindAbsent:
		if p.By == nil {
			keys = map[string]bool{"": true}
		}
		for k := range keys {
			armed, deadline := p.By == nil, t0+w
			var lastEv []*event.Event
			for _, e := range s {
				if armed && deadline < tm(e) {
					add(k, deadline, lastEv)
					armed = false
				}
				if keyOf(p, e) == k && p.Steps[0].Match(e, nil) {
					lastEv = []*event.Event{e}
					if !armed {
						armed, deadline = true, tm(e)+w
					} else {
						deadline = max(deadline, tm(e)+w)
					}
				}
			}
			if armed && deadline < maxT {
				add(k, deadline, lastEv)
			}
		}
	}
	return out
}

// refLimit applies the cooldown (per key) and then the rate limit to raw
// matches of one pattern, in emission order.
func refLimit(p *Pattern, raw []refMatch) []refMatch {
	// Matches completed by an event come in event order; timers fire in
	// (deadline, key, seq) order.
	slices.SortFunc(raw, func(a, b refMatch) int {
		if p.Kind == KindNotFollowedBy || p.Kind == KindAbsent {
			return cmp.Or(cmp.Compare(a.Time, b.Time), cmp.Compare(a.Key, b.Key), cmp.Compare(lastSeq(a), lastSeq(b)))
		}
		return cmp.Or(cmp.Compare(a.Time, b.Time), cmp.Compare(lastSeq(a), lastSeq(b)), cmp.Compare(a.Key, b.Key))
	})
	var out []refMatch
	lastAt := map[string]int64{}
	period := int64(p.RatePeriod)
	if period == 0 {
		period = 60e9
	}
	perWin := map[int64]int{}
	for _, m := range raw {
		if p.Cooldown > 0 {
			if at, ok := lastAt[m.Key]; ok && m.Time-at < int64(p.Cooldown) {
				continue
			}
			lastAt[m.Key] = m.Time
		}
		if p.MaxRate > 0 {
			win := floorDiv(m.Time, period)
			perWin[win]++
			if perWin[win] > p.MaxRate {
				if perWin[win] == p.MaxRate+1 {
					out = append(out, refMatch{Rule: p.Name, Key: m.Key, Time: m.Time, Throttled: true})
				}
				continue
			}
		}
		out = append(out, m)
	}
	return out
}
