package route

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/filter"
)

// Strategy chooses which targets of a route receive an event.
type Strategy uint8

// The strategies.
const (
	// Broadcast delivers to every target.
	Broadcast Strategy = iota
	// RoundRobin delivers to one member in turn.
	RoundRobin
	// Weighted delivers to one member in proportion to Route.Weights,
	// interleaved (smooth weighted round-robin).
	Weighted
	// KeyHash delivers all events with one subject to the same member, so
	// that they stay in order (while the membership and its health stay
	// the same).
	KeyHash
	// Failover delivers to the first target, or the next one when it
	// fails or its breaker is open.
	Failover
)

var strategyNames = [...]string{"broadcast", "round-robin", "weighted", "key-hash", "failover"}

// String returns the strategy's name, e.g. "round-robin".
func (s Strategy) String() string {
	if int(s) < len(strategyNames) {
		return strategyNames[s]
	}
	return "unknown"
}

// ParseStrategy parses a strategy name; "" is Broadcast.
func ParseStrategy(s string) (Strategy, error) {
	if s == "" {
		return Broadcast, nil
	}
	for i, n := range strategyNames {
		if n == s {
			return Strategy(i), nil
		}
	}
	return 0, fmt.Errorf("strategy %q (want broadcast, round-robin, weighted, key-hash or failover): %w", s, ErrBadRoute)
}

// BreakerSettings configure the per-target circuit breakers.
type BreakerSettings struct {
	// Failures is the number of consecutive failures that opens a
	// breaker (default 5).
	Failures uint32
	// Timeout is how long a breaker stays open before it lets probes
	// through (half-open; default 5s).
	Timeout time.Duration
	// Probes is how many events a half-open breaker lets through; that
	// many successes close it (default 1).
	Probes uint32
}

// maxSchedule bounds the weighted schedule; larger weight sums are scaled.
const maxSchedule = 4096

// compiled is a validated route with its delivery state. It is shared by
// every table that contains it, so that round-robin positions and breakers
// survive reconfiguration.
type compiled[T comparable] struct {
	name     string
	sel      *CompiledSelector
	dir      string // literal directory of the path glob, for the index
	extra    filter.Filter
	redact   *filter.Redactor
	strategy Strategy
	targets  []T
	breakers []*gobreaker.CircuitBreaker[struct{}] // per target; nil entries without one
	sched    []uint16                              // Weighted: member per turn
	next     atomic.Uint64                         // turn counter
	pos      int32                                 // position in Router.all; read and written under Router.mu
	dead     atomic.Uint64                         // table version from which the route is removed; 0: live
}

func (r *Router[T]) compileRouteLocked(rt Route[T]) (*compiled[T], error) {
	sel, err := rt.Selector.Compile()
	if err != nil {
		return nil, err
	}
	if len(rt.Targets) == 0 {
		return nil, fmt.Errorf("no targets: %w", ErrBadRoute)
	}
	if len(rt.Targets) > 1<<16 {
		return nil, fmt.Errorf("%d targets, more than %d: %w", len(rt.Targets), 1<<16, ErrBadRoute)
	}
	if rt.Strategy > Failover {
		return nil, fmt.Errorf("unknown strategy %d: %w", rt.Strategy, ErrBadRoute)
	}
	if rt.Filter != nil {
		if err := rt.Filter.Validate(); err != nil {
			return nil, fmt.Errorf("filter: %w", err)
		}
	}
	c := &compiled[T]{name: rt.Name, sel: sel, dir: sel.dir(), extra: rt.Filter, redact: rt.Redact,
		strategy: rt.Strategy, targets: append([]T(nil), rt.Targets...)}
	if rt.Strategy == Weighted {
		if c.sched, err = schedule(rt.Weights, len(rt.Targets)); err != nil {
			return nil, err
		}
	} else if rt.Weights != nil {
		return nil, fmt.Errorf("weights given for strategy %s: %w", rt.Strategy, ErrBadRoute)
	}
	if rt.Breakers {
		c.breakers = make([]*gobreaker.CircuitBreaker[struct{}], len(rt.Targets))
		for i, tgt := range rt.Targets {
			c.breakers[i] = r.breakerLocked(tgt)
		}
	}
	return c, nil
}

// breakerLocked returns the breaker of tgt, shared by all routes.
func (r *Router[T]) breakerLocked(tgt T) *gobreaker.CircuitBreaker[struct{}] {
	if b := r.breakers[tgt]; b != nil {
		return b
	}
	bs := r.opts.Breaker
	failures := bs.Failures
	if failures == 0 {
		failures = 5
	}
	if bs.Timeout <= 0 {
		bs.Timeout = 5 * time.Second
	}
	if bs.Probes == 0 {
		bs.Probes = 1
	}
	st := gobreaker.Settings{
		Name:        fmt.Sprint(tgt),
		MaxRequests: bs.Probes,
		Timeout:     bs.Timeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
	}
	if fn := r.opts.OnBreakerChange; fn != nil {
		st.OnStateChange = func(_ string, from, to gobreaker.State) { fn(tgt, from, to) }
	}
	b := gobreaker.NewCircuitBreaker[struct{}](st)
	r.breakers[tgt] = b
	return b
}

// schedule interleaves members in proportion to their weights (smooth
// weighted round-robin), scaled down to at most maxSchedule turns.
func schedule(weights []int, n int) ([]uint16, error) {
	if len(weights) != n {
		return nil, fmt.Errorf("%d weights for %d targets: %w", len(weights), n, ErrBadRoute)
	}
	total := 0
	g := 0
	for i, w := range weights {
		if w <= 0 {
			return nil, fmt.Errorf("weight %d of target %d is not positive: %w", w, i, ErrBadRoute)
		}
		total += w
		g = gcd(g, w)
	}
	ws := make([]int, n)
	total = 0
	for i, w := range weights {
		ws[i] = w / g
		total += ws[i]
	}
	if total > maxSchedule {
		scaled := 0
		for i := range ws {
			ws[i] = max(1, ws[i]*maxSchedule/total)
			scaled += ws[i]
		}
		total = scaled
	}
	cur := make([]int, n)
	out := make([]uint16, total)
	for k := range out {
		best := 0
		for i := range ws {
			cur[i] += ws[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		out[k] = uint16(best)
	}
	return out, nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// deliverTo hands ev to the route's targets and returns the number of
// successful deliveries, which the caller adds to st.delivered.
func deliverTo[T comparable, A any](c *compiled[T], ev *event.Event, arg A, fn func(T, *event.Event, A) error, st *counters) int {
	n := len(c.targets)
	if c.strategy == Broadcast {
		ok := 0
		for i := range c.targets {
			if try(c, i, ev, arg, fn, st) {
				ok++
			}
		}
		return ok
	}
	var start int
	var turn uint64
	switch c.strategy {
	case RoundRobin:
		turn = c.next.Add(1) - 1
		start = int(turn % uint64(n))
	case Weighted:
		turn = c.next.Add(1) - 1
		start = int(c.sched[turn%uint64(len(c.sched))])
	case KeyHash:
		turn = fnv1a(ev.Subject)
		start = int(jump(turn, n))
	}
	if try(c, start, ev, arg, fn, st) {
		return 1
	}
	// The chosen member failed: try the others in ring order, starting at
	// an offset that rotates with the turn so that a failed member's share
	// spreads over all the others (for KeyHash the offset depends only on
	// the subject, so one file still goes to one member).
	if n > 1 {
		off := int((turn / uint64(n)) % uint64(n-1))
		for k := range n - 1 {
			i := (start + 1 + (off+k)%(n-1)) % n
			if try(c, i, ev, arg, fn, st) {
				st.failovers.Add(1)
				return 1
			}
		}
	}
	st.undelivered.Add(1)
	return 0
}

// try delivers ev to target i of c through its breaker, if any.
func try[T comparable, A any](c *compiled[T], i int, ev *event.Event, arg A, fn func(T, *event.Event, A) error, st *counters) bool {
	var err error
	if c.breakers == nil {
		err = fn(c.targets[i], ev, arg)
	} else {
		tgt := c.targets[i]
		_, err = c.breakers[i].Execute(func() (struct{}, error) { return struct{}{}, fn(tgt, ev, arg) })
		if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
			st.skipped.Add(1)
			return false
		}
	}
	if err != nil {
		st.failed.Add(1)
		return false
	}
	return true // counted as delivered by the caller of deliverTo
}

// fnv1a hashes a subject (64-bit FNV-1a): fixed across processes, so a
// file maps to the same member after a restart.
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// jump is Lamping and Veach's jump consistent hash: adding a member moves
// only 1/n of the keys.
func jump(key uint64, n int) int32 {
	var b, j int64 = -1, 0
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int32(b)
}
