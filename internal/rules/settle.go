package rules

import (
	"container/list"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/semprop/semprop/event"
)

// Settled rules (settle: DURATION). A rule with settle sees, instead of
// the events as they were read, one event per burst on a subject: events
// on one subject that follow each other (in event time) within the settle
// time become one event, the last of the burst, with the attributes
// "count" (how many), "first" (the time of the first, RFC 3339) and
// "settle" (the settle time), whose time is the last event's plus the
// settle time. It is released when an event read later is later than
// that (or the idle advance moves the watermark past it): so settling
// depends only on the stream, and a replay after a crash settles the same
// way. Bursts still settling are part of the checkpoint. Events without a
// subject are never collapsed (each is its own burst).
//
// Inside the engine a settled event carries its last event's seq with
// settledSeq set, which tells it apart from the events as read; the seqs
// of a match are reported without it.

// maxSettle bounds a rule's settle time.
const maxSettle = time.Minute

// settledSeq marks the seq of a settled event inside the engine.
const settledSeq = uint64(1) << 63

// maxSettleKeys bounds the subjects settling at once in one group; past
// it the oldest burst is released early.
const maxSettleKeys = 65536

// isSettledFor reports whether ev is a settled event of settle time d
// (d == 0: an event as it was read).
func isSettledFor(ev *event.Event, d time.Duration) bool {
	if ev.Seq&settledSeq == 0 {
		return d == 0
	}
	if d == 0 {
		return false
	}
	v, _ := ev.Attr("settle")
	return v == d.String()
}

// settleBurst is one subject's burst.
type settleBurst struct {
	key   string
	last  *event.Event
	count int64
	first time.Time
}

// settleGroup settles the events of the rules of one settle time. It is
// used under the engine's mu.
type settleGroup struct {
	d     time.Duration
	types []string // nil: every type
	byKey map[string]*list.Element
	order list.List // of *settleBurst, by last event read
}

func newSettleGroup(d time.Duration) *settleGroup {
	return &settleGroup{d: d, byKey: make(map[string]*list.Element)}
}

// wants reports whether a rule of the group may take an event of typ.
func (g *settleGroup) wants(typ string) bool {
	if g.types == nil {
		return true
	}
	_, ok := slices.BinarySearch(g.types, typ)
	return ok
}

// add puts ev into its subject's burst; it returns the burst released
// early to stay within maxSettleKeys (nil if none).
func (g *settleGroup) add(ev *event.Event) *event.Event {
	key := ev.Subject
	if key == "" {
		key = "\x00" + strconv.FormatUint(ev.Seq, 10)
	}
	if e, ok := g.byKey[key]; ok {
		b := e.Value.(*settleBurst)
		b.last = ev
		b.count++
		g.order.MoveToBack(e)
		return nil
	}
	var early *event.Event
	if len(g.byKey) >= maxSettleKeys {
		early = g.pop()
	}
	g.byKey[key] = g.order.PushBack(&settleBurst{key: key, last: ev, count: 1, first: ev.Time})
	return early
}

// pop removes the oldest burst and returns it as a settled event.
func (g *settleGroup) pop() *event.Event {
	b := g.order.Remove(g.order.Front()).(*settleBurst)
	delete(g.byKey, b.key)
	return g.settled(b)
}

// due removes and returns, as settled events, the bursts (oldest read
// first) whose last event is more than the settle time before t.
func (g *settleGroup) due(t int64, out []*event.Event) []*event.Event {
	for g.order.Len() > 0 {
		b := g.order.Front().Value.(*settleBurst)
		if b.last.Time.UnixNano()+int64(g.d) >= t {
			break
		}
		out = append(out, g.pop())
	}
	return out
}

// settled is the burst as one event: a copy of its last event.
func (g *settleGroup) settled(b *settleBurst) *event.Event {
	ev := *b.last
	ev.Attrs = slices.Clone(b.last.Attrs)
	ev.Seq = b.last.Seq | settledSeq
	ev.Time = b.last.Time.Add(g.d)
	ev.SetAttr("count", strconv.FormatInt(b.count, 10))
	ev.SetAttr("first", b.first.UTC().Format(time.RFC3339Nano))
	ev.SetAttr("settle", g.d.String())
	return &ev
}

// settleGroups are the groups of a rule set, by settle time (ascending).
type settleGroups []*settleGroup

// groupsFor builds the groups of set's enabled settled rules, keeping the
// bursts of old groups whose settle time is still used.
func groupsFor(set *Set, old settleGroups) settleGroups {
	byD := map[time.Duration][]*Rule{}
	for _, r := range set.Rules {
		if r.Enabled && r.Settle > 0 {
			byD[r.Settle] = append(byD[r.Settle], r)
		}
	}
	var gs settleGroups
	for d, rs := range byD {
		g := old.group(d)
		if g == nil {
			g = newSettleGroup(d)
		}
		g.types = []string{}
		for _, r := range rs {
			if r.pattern.Types == nil {
				g.types = nil
				break
			}
			g.types = append(g.types, r.pattern.Types...)
		}
		if g.types != nil {
			slices.Sort(g.types)
			g.types = slices.Compact(g.types)
		}
		gs = append(gs, g)
	}
	slices.SortFunc(gs, func(a, b *settleGroup) int { return int(a.d - b.d) })
	return gs
}

func (gs settleGroups) group(d time.Duration) *settleGroup {
	for _, g := range gs {
		if g.d == d {
			return g
		}
	}
	return nil
}

// due returns the settled events released by time t (Unix ns), group by
// group.
func (gs settleGroups) due(t int64) []*event.Event {
	var out []*event.Event
	for _, g := range gs {
		out = g.due(t, out)
	}
	return out
}

// add puts ev into the groups that want it; it returns bursts released
// early.
func (gs settleGroups) add(ev *event.Event) []*event.Event {
	var out []*event.Event
	for _, g := range gs {
		if g.wants(ev.Type) {
			if early := g.add(ev); early != nil {
				out = append(out, early)
			}
		}
	}
	return out
}

// snapBurst is a burst in the checkpoint.
type snapBurst struct {
	Settle string    `json:"settle"`
	Count  int64     `json:"count"`
	First  time.Time `json:"first"`
	Seq    uint64    `json:"seq"`
	Last   []byte    `json:"last"` // binary encoding
}

// snapshot lists the bursts still settling.
func (gs settleGroups) snapshot() ([]snapBurst, error) {
	var out []snapBurst
	for _, g := range gs {
		for e := g.order.Front(); e != nil; e = e.Next() {
			b := e.Value.(*settleBurst)
			bin, err := b.last.MarshalBinary()
			if err != nil {
				return nil, fmt.Errorf("settled burst of seq %d: %w", b.last.Seq, err)
			}
			out = append(out, snapBurst{Settle: g.d.String(), Count: b.count, First: b.first, Seq: b.last.Seq, Last: bin})
		}
	}
	return out, nil
}

// restore puts the checkpoint's bursts back into their groups; those of a
// settle time no rule uses any more are dropped.
func (gs settleGroups) restore(bs []snapBurst) error {
	for _, sb := range bs {
		d, err := time.ParseDuration(sb.Settle)
		if err != nil {
			return fmt.Errorf("settled burst: %w", err)
		}
		g := gs.group(d)
		if g == nil {
			continue
		}
		ev := new(event.Event)
		if err := ev.UnmarshalBinary(sb.Last); err != nil {
			return fmt.Errorf("settled burst of seq %d: %w", sb.Seq, err)
		}
		ev.Seq = sb.Seq
		g.add(ev)
		b := g.order.Back().Value.(*settleBurst)
		b.count, b.first = sb.Count, sb.First
	}
	return nil
}
