package cep

import (
	"errors"
	"fmt"
	"time"

	"github.com/semprop/semprop/event"
)

// Errors returned by the engine.
var (
	ErrPattern  = errors.New("cep: invalid pattern")
	ErrSnapshot = errors.New("cep: invalid snapshot")
)

// Kind is the shape of a pattern.
type Kind uint8

// The pattern kinds.
const (
	// KindSingle matches every event its one step accepts.
	KindSingle Kind = iota + 1
	// KindCount matches Count accepted events (or Count distinct values
	// of Distinct) with the same key within Within.
	KindCount
	// KindSequence matches its steps in order, other events allowed in
	// between (relaxed contiguity), the last within Within of the first.
	KindSequence
	// KindNotFollowedBy matches an event its step accepts that no event
	// accepted by Not follows within Within.
	KindNotFollowedBy
	// KindAbsent matches when no event its step accepts has been seen
	// for Within.
	KindAbsent
)

var kindNames = [...]string{"", "single", "count", "sequence", "not_followed_by", "absent"}

// String returns the kind's name as used in rule files.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Cond is a condition on one event. bound holds the events bound by the
// earlier steps of the partial match, in step order (bound[0] is the first
// event); it is empty for a first step. Implementations must be safe for
// concurrent use and must not modify or retain the events.
type Cond interface {
	Match(ev *event.Event, bound []*event.Event) bool
}

// CondFunc adapts a function to Cond.
type CondFunc func(ev *event.Event, bound []*event.Event) bool

// Match calls f.
func (f CondFunc) Match(ev *event.Event, bound []*event.Event) bool { return f(ev, bound) }

// KeyFunc extracts a string from an event: a partition key or the value
// counted by distinct.
type KeyFunc func(ev *event.Event) string

// Pattern is one compiled rule: a pattern over the event stream. A Pattern
// must not be modified once given to an engine.
type Pattern struct {
	Name string
	Kind Kind
	// Steps: one for single, count, not_followed_by and absent (the
	// trigger, or the awaited event); two or more for sequence.
	Steps []Cond
	// Not cancels a pending not_followed_by trigger; it sees the trigger
	// as bound[0].
	Not Cond
	// Count is the number of events (or distinct values) a count pattern
	// needs; at least 1.
	Count int
	// Distinct, if set, makes a count pattern count distinct values.
	Distinct KeyFunc
	// Within bounds a match: for count and sequence the time from the
	// first to the last event (0 = unbounded), for not_followed_by the
	// time a trigger waits, for absent the silence that fires it.
	Within time.Duration
	// By partitions the stream; nil puts every event under the key "".
	By KeyFunc
	// Cooldown suppresses, per key, a match less than Cooldown after the
	// last emitted one.
	Cooldown time.Duration
	// MaxRate, if positive, throttles the rule: at most MaxRate matches
	// per RatePeriod (fixed windows of event time; default one minute).
	MaxRate    int
	RatePeriod time.Duration
	// Types lists the event types any of the pattern's conditions can
	// accept; nil means any type. The engine never shows a pattern an
	// event of another type, so Types must be a superset.
	Types []string
	// Fingerprint identifies the pattern's definition: a reloaded pattern
	// with the same Name and Fingerprint keeps its state. Empty means
	// never kept.
	Fingerprint string
}

func (p *Pattern) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: "+format+": %w", append([]any{p.Name}, append(args, ErrPattern)...)...)
	}
	if p.Name == "" {
		return fmt.Errorf("pattern without a name: %w", ErrPattern)
	}
	for i, c := range p.Steps {
		if c == nil {
			return bad("step %d has no condition", i)
		}
	}
	if p.Within < 0 || p.Cooldown < 0 || p.MaxRate < 0 || p.RatePeriod < 0 {
		return bad("negative duration or rate")
	}
	switch p.Kind {
	case KindSingle:
		if len(p.Steps) != 1 {
			return bad("single needs one step")
		}
	case KindCount:
		if len(p.Steps) != 1 || p.Count < 1 {
			return bad("count needs one step and count >= 1")
		}
	case KindSequence:
		if len(p.Steps) < 2 {
			return bad("sequence needs two or more steps")
		}
	case KindNotFollowedBy:
		if len(p.Steps) != 1 || p.Not == nil || p.Within <= 0 {
			return bad("not_followed_by needs a trigger, a condition and within > 0")
		}
	case KindAbsent:
		if len(p.Steps) != 1 || p.Within <= 0 {
			return bad("absent needs a condition and for > 0")
		}
	default:
		return bad("unknown kind %d", p.Kind)
	}
	return nil
}

// horizon is how long after its last activity a key's state can matter:
// the window or the cooldown, whichever is longer; -1 if unbounded.
func (p *Pattern) horizon() int64 {
	if p.Within == 0 && (p.Kind == KindCount || p.Kind == KindSequence) {
		return -1
	}
	return int64(max(p.Within, p.Cooldown))
}

// Match is one match of a pattern.
type Match struct {
	Rule    int    // index of the pattern in the engine
	Pattern string // its name
	Key     string
	// Events are the matched events in order: for count and sequence the
	// events of the match, for not_followed_by the trigger, for absent the
	// last awaited event seen (none if there was none).
	Events []*event.Event
	// Time is the match's event time in Unix nanoseconds: the last event's
	// time, or the deadline for not_followed_by and absent.
	Time int64
	// Depth is one more than the largest depth among Events (see
	// Options.DepthAttr).
	Depth int
	// Throttled marks the notice that the rule has just been throttled:
	// Events are empty and the matches that follow in this rate window
	// are dropped (and counted).
	Throttled bool
}

// Seqs returns the seqs of the matched events, in order.
func (m *Match) Seqs() []uint64 {
	s := make([]uint64, len(m.Events))
	for i, ev := range m.Events {
		s[i] = ev.Seq
	}
	return s
}

// Limits bound a pattern's state. Zero fields take the defaults.
type Limits struct {
	// MaxKeys is the number of keys a pattern keeps state for; a new key
	// beyond it evicts the least recently active one. Default 100000.
	MaxKeys int
	// MaxPartials bounds the partial matches (sequence), pending triggers
	// (not_followed_by) or window events (count: never fewer than Count)
	// per key; a new one beyond it evicts the oldest. Default 1000.
	MaxPartials int
}

func (l Limits) withDefaults() Limits {
	if l.MaxKeys <= 0 {
		l.MaxKeys = 100000
	}
	if l.MaxPartials <= 0 {
		l.MaxPartials = 1000
	}
	return l
}

// Counters are a pattern's counters. Gauges (Keys, Partials) are current
// values; the rest count since the pattern was loaded.
type Counters struct {
	Events      uint64 `json:"events"`       // events shown to the pattern
	Matches     uint64 `json:"matches"`      // matches emitted
	Suppressed  uint64 `json:"suppressed"`   // matches dropped by the cooldown
	Throttled   uint64 `json:"throttled"`    // matches dropped by the rate limit
	Late        uint64 `json:"late"`         // events of its types dropped as late
	KeysEvicted uint64 `json:"keys_evicted"` // keys evicted by MaxKeys
	Evicted     uint64 `json:"evicted"`      // partials evicted by MaxPartials
	Purged      uint64 `json:"purged"`       // idle keys removed
	EvalNanos   uint64 `json:"eval_ns"`      // evaluation time (sampled, scaled)
	Keys        int    `json:"keys"`
	Partials    int    `json:"partials"`
}
