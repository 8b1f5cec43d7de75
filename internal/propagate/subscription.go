package propagate

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/route"
)

// Policy says what a live subscription does when its queue is full.
type Policy uint8

// The policies; see the package documentation.
const (
	PolicyDropNewest Policy = iota
	PolicyDropOldest
	PolicyBlock
)

// ParsePolicy parses "drop-newest", "drop-oldest" or "block".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "drop-newest", "":
		return PolicyDropNewest, nil
	case "drop-oldest":
		return PolicyDropOldest, nil
	case "block":
		return PolicyBlock, nil
	}
	return 0, fmt.Errorf("propagate: unknown policy %q: want drop-newest, drop-oldest or block", s)
}

func (p Policy) String() string {
	switch p {
	case PolicyDropNewest:
		return "drop-newest"
	case PolicyDropOldest:
		return "drop-oldest"
	case PolicyBlock:
		return "block"
	}
	return "unknown"
}

// SubscribeOptions configure a live subscription.
type SubscribeOptions struct {
	// Name makes the subscription a target for dynamic routes (AddRoutes)
	// and names it in stats; unique among open subscriptions; optional.
	Name string
	// Selector chooses events by type pattern, path glob and filter
	// expression; the zero value selects every event.
	Selector route.Selector
	// Matcher, if set, is checked after the selector (e.g. what a token
	// may see).
	Matcher Matcher
	// RoutedOnly subscribes to nothing by itself: the subscription gets
	// only what dynamic routes send it (a member of a group).
	RoutedOnly   bool
	Queue        int           // queue capacity, rounded up to a power of two; default 1024
	Policy       Policy        // default PolicyDropNewest
	BlockTimeout time.Duration // PolicyBlock: longest wait for room; default 1s
}

// Subscription is a live subscription: a bounded queue of matching events.
// One goroutine at a time may call Next or NextBatch; Stats and Close are
// safe from any goroutine.
type Subscription struct {
	m       *Manager
	id      string // its own route's name
	name    string
	matcher Matcher // nil: none beyond the selector
	policy  Policy
	timeout time.Duration
	q       *ring

	delivered atomic.Uint64 // taken by the subscriber
	offered   atomic.Uint64 // matched and queued (or dropped)
	dropped   atomic.Uint64

	closeOnce sync.Once
	closed    chan struct{}
}

// Subscribe adds a live subscription. It receives matching events sequenced
// after Subscribe returns. A bad selector is an error wrapping
// route.ErrBadSelector that names the part at fault.
func (m *Manager) Subscribe(opts SubscribeOptions) (*Subscription, error) {
	select {
	case <-m.closed:
		return nil, ErrClosed
	default:
	}
	if opts.Queue <= 0 {
		opts.Queue = 1024
	}
	if opts.BlockTimeout <= 0 {
		opts.BlockTimeout = time.Second
	}
	s := &Subscription{
		m: m, name: opts.Name, matcher: opts.Matcher, policy: opts.Policy,
		timeout: opts.BlockTimeout, q: newRing(opts.Queue), closed: make(chan struct{}),
	}
	m.subMu.Lock()
	defer m.subMu.Unlock()
	if opts.Name != "" {
		if _, taken := m.named[opts.Name]; taken {
			return nil, fmt.Errorf("propagate: a subscription named %q is open", opts.Name)
		}
	}
	m.nextID++
	s.id = "sub-" + strconv.FormatUint(m.nextID, 10)
	if !opts.RoutedOnly {
		err := m.router.Add(route.Route[*Subscription]{Name: s.id, Selector: opts.Selector, Targets: []*Subscription{s}})
		if err != nil {
			return nil, fmt.Errorf("propagate: subscribe: %w", err)
		}
	}
	m.subs[s] = struct{}{}
	if opts.Name != "" {
		m.named[opts.Name] = s
	}
	return s, nil
}

// offer is the routing table's delivery function: it queues ev for s per
// the subscription's policy. It never fails: drops are the policy's and are
// counted on the subscription.
func offer(s *Subscription, ev *event.Event, at int64) error {
	if s.matcher != nil && !s.matcher.Match(ev) {
		return nil
	}
	select {
	case <-s.closed:
		return ErrClosed // a route still names it: the group moves on
	default:
	}
	s.offered.Add(1)
	switch s.q.push(ev, at, s.policy, s.timeout) {
	case pushedDropped, dropped:
		s.dropped.Add(1)
	}
	return nil
}

// Next returns the next event, waiting for one until ctx is done or the
// subscription is closed (ErrClosed, after the queue is drained).
func (s *Subscription) Next(ctx context.Context) (*event.Event, error) {
	for {
		if ev, at, ok := s.q.pop(); ok {
			s.took(at)
			return ev, nil
		}
		if err := s.q.wait(ctx, s.closed); err != nil {
			return nil, err
		}
	}
}

// NextBatch fills buf with up to len(buf) queued events, waiting for at
// least one, and returns how many it stored.
func (s *Subscription) NextBatch(ctx context.Context, buf []*event.Event) (int, error) {
	for {
		n := 0
		for n < len(buf) {
			ev, at, ok := s.q.pop()
			if !ok {
				break
			}
			buf[n] = ev
			n++
			if n == 1 {
				s.took(at)
			}
		}
		if n > 0 {
			s.delivered.Add(uint64(n - 1))
			return n, nil
		}
		if err := s.q.wait(ctx, s.closed); err != nil {
			return 0, err
		}
	}
}

func (s *Subscription) took(at int64) {
	s.delivered.Add(1)
	s.m.latency.Observe(nanotime() - at)
}

// Close removes the subscription; a waiting Next returns ErrClosed once
// the queue is drained. Close is idempotent.
func (s *Subscription) Close() {
	s.closeOnce.Do(func() {
		m := s.m
		m.subMu.Lock()
		m.router.Remove(s.id)
		delete(m.subs, s)
		if s.name != "" && m.named[s.name] == s {
			delete(m.named, s.name)
		}
		m.subMu.Unlock()
		close(s.closed)
	})
}

// SubscriptionStats are one subscription's counters.
type SubscriptionStats struct {
	Name      string
	Policy    Policy
	Delivered uint64 // taken by the subscriber
	Matched   uint64 // offered to the queue
	Dropped   uint64 // lost to the policy
	Depth     int    // queued now
	Capacity  int
}

// Stats returns the subscription's counters.
func (s *Subscription) Stats() SubscriptionStats {
	return SubscriptionStats{
		Name: s.name, Policy: s.policy, Delivered: s.delivered.Load(), Matched: s.offered.Load(),
		Dropped: s.dropped.Load(), Depth: s.q.len(), Capacity: s.q.cap(),
	}
}
