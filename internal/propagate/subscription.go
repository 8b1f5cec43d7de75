package propagate

import (
	"context"
	"errors"
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
	// PolicyPriority queues by event priority in four lanes: the subscriber
	// always takes critical events first, then high, normal and bulk; a
	// full queue sheds the oldest event of the lowest lane below the new
	// one (bulk first) and refuses an event when everything queued ranks
	// as high or higher. Every shed and refused event is counted.
	PolicyPriority
)

func (p Policy) String() string {
	switch p {
	case PolicyDropNewest:
		return "drop-newest"
	case PolicyDropOldest:
		return "drop-oldest"
	case PolicyBlock:
		return "block"
	case PolicyPriority:
		return "priority"
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
	RoutedOnly bool
	// Group makes the subscription a member of the group of that name
	// (see "Groups" in group.go's documentation and AddRoutes): it gets
	// the group's share of the events of the group's route, which is made
	// from Selector when the group does not exist yet. A member is
	// RoutedOnly; its Selector, if given, must be the group's.
	Group string
	// Weight is the member's share in a group whose route is weighted
	// (default 1).
	Weight int
	// Queue is the queue's capacity, rounded up to a power of two;
	// default 1024. Its memory (32 bytes a slot; PolicyPriority's lanes
	// grow as needed instead) is committed at Subscribe, so that no
	// publisher takes a page fault on it later.
	Queue        int
	Policy       Policy        // default PolicyDropNewest
	BlockTimeout time.Duration // PolicyBlock: longest wait for room; default 1s
}

// Subscription is a live subscription: a bounded queue of matching events.
// One goroutine at a time may take its events (Next, NextBatch or
// TryNext: its queue has one reader); Stats and Close are safe from any
// goroutine.
type Subscription struct {
	m       *Manager
	id      string // its own route's name
	num     uint64 // its number, unique in the manager: the metrics id of an anonymous one
	name    string
	group   string // "" when not in a group
	weight  int
	routed  bool    // RoutedOnly: no route of its own
	matcher Matcher // nil: none beyond the selector
	policy  Policy
	timeout time.Duration
	q       *ring                  // all policies but PolicyPriority
	lanes   *route.Lanes[laneItem] // PolicyPriority
	q0cap   int                    // capacity of lanes

	closed    chan struct{}
	closeOnce sync.Once

	// The publisher's counters and the subscriber's on separate cache
	// lines, so that neither side's writes evict what the other reads.
	_         [cacheLine]byte
	offered   atomic.Uint64 // matched and queued (or dropped)
	dropped   atomic.Uint64
	_         [cacheLine - 16]byte
	delivered atomic.Uint64 // taken by the subscriber
	_         [cacheLine - 8]byte
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
		m: m, name: opts.Name, group: opts.Group, routed: opts.RoutedOnly || opts.Group != "", weight: groupWeight(opts.Weight), matcher: opts.Matcher, policy: opts.Policy,
		timeout: opts.BlockTimeout, closed: make(chan struct{}),
	}
	if opts.Policy == PolicyPriority {
		s.lanes, s.q0cap = route.NewLanes[laneItem](opts.Queue), opts.Queue
	} else {
		s.q = newRing(opts.Queue, opts.Policy)
	}
	m.subMu.Lock()
	defer m.subMu.Unlock()
	if opts.Name != "" {
		if _, taken := m.named[opts.Name]; taken {
			return nil, fmt.Errorf("propagate: a subscription named %q is open", opts.Name)
		}
	}
	m.nextID++
	s.num = m.nextID
	s.id = "sub-" + strconv.FormatUint(m.nextID, 10)
	if opts.Group != "" {
		if err := m.joinLocked(s, opts.Selector); err != nil {
			return nil, err
		}
	} else if !opts.RoutedOnly {
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
// the subscription's policy. It fails only for a group member that cannot
// take ev (closed, full, or ev not visible to it), so that the group
// passes it to another member; other subscriptions' drops are the
// policy's and are counted on the subscription.
func offer(s *Subscription, ev *event.Event, at int64) error {
	return offerAt(s, ev, at, &s.m.toWake, nil)
}

// offerStaged is offer for the events of a delivery of several: they are
// staged in the subscriber's queue (ring.stage) and published by the
// delivery's end (Manager.publishStaged).
func offerStaged(s *Subscription, ev *event.Event, at int64) error {
	return offerAt(s, ev, at, &s.m.toWake, &s.m.staged)
}

// offerTo is offer for re-routing, outside a delivery: it collects the
// subscribers to wake in *wake, not in the manager's list.
func offerTo(s *Subscription, ev *event.Event, wake *[]*ring) error {
	return offerAt(s, ev, 0, wake, nil)
}

// offerAt queues ev for s. With staged, ev is staged (not yet visible to
// the subscriber) and s's queue is added to *staged when it is the first
// staged event there.
func offerAt(s *Subscription, ev *event.Event, at int64, wake, staged *[]*ring) error {
	if s.matcher != nil && !s.matcher.Match(ev) {
		if s.group != "" {
			return errPassOver
		}
		return nil
	}
	select {
	case <-s.closed:
		return ErrClosed // a route still names it: the group moves on
	default:
	}
	s.offered.Add(1)
	if s.lanes != nil {
		s.lanes.Push(ev.Priority, laneItem{ev, at}) // shed and refused are counted by the lanes
		return nil
	}
	var res pushResult
	if staged == nil {
		res = s.q.push(ev, at, s.policy, s.timeout)
	} else {
		first := s.q.staged == 0
		res = s.q.stage(ev, at, s.policy, s.timeout)
		if first && s.q.staged != 0 {
			*staged = append(*staged, s.q)
		}
	}
	if res&dropped != 0 && s.group != "" {
		s.offered.Add(^uint64(0)) // not offered: the group passes it on
		return errPassOver
	}
	if res&(pushedDropped|dropped) != 0 {
		s.dropped.Add(1)
	}
	if res&pushedWake != 0 {
		// Woken after the whole delivery (deliver runs one at a time).
		*wake = append(*wake, s.q)
	}
	return nil
}

// laneItem is a queued event of a PolicyPriority subscription.
type laneItem struct {
	ev *event.Event
	at int64
}

// Next returns the next event, waiting for one until ctx is done or the
// subscription is closed (ErrClosed, after the queue is drained).
func (s *Subscription) Next(ctx context.Context) (*event.Event, error) {
	if s.lanes != nil {
		it, err := s.lanes.Pop(ctx)
		if errors.Is(err, route.ErrClosed) {
			return nil, ErrClosed
		}
		if err != nil {
			return nil, err
		}
		s.took(it.at)
		return it.ev, nil
	}
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

// TryNext returns the next queued event without waiting, for consumers
// that poll (lowest latency: no wake-up), or false if none is queued.
func (s *Subscription) TryNext() (*event.Event, bool) {
	if s.lanes != nil {
		it, ok := s.lanes.TryPop()
		if ok {
			s.took(it.at)
		}
		return it.ev, ok
	}
	ev, at, ok := s.q.pop()
	if ok {
		s.took(at)
	}
	return ev, ok
}

// NextBatch fills buf with up to len(buf) queued events, waiting for at
// least one, and returns how many it stored.
func (s *Subscription) NextBatch(ctx context.Context, buf []*event.Event) (int, error) {
	if s.lanes != nil {
		if len(buf) == 0 {
			return 0, nil
		}
		ev, err := s.Next(ctx)
		if err != nil {
			return 0, err
		}
		buf[0] = ev
		n := 1
		for n < len(buf) {
			it, ok := s.lanes.TryPop()
			if !ok {
				break
			}
			buf[n] = it.ev
			n++
		}
		s.delivered.Add(uint64(n - 1))
		return n, nil
	}
	for {
		if n, at := s.q.popBatch(buf); n > 0 {
			s.took(at)
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
	if at != 0 {
		s.m.latency.Observe(nanotime() - at)
	}
}

// Close removes the subscription; a waiting Next returns ErrClosed once
// the queue is drained. Close is idempotent.
func (s *Subscription) Close() {
	s.closeOnce.Do(func() {
		m := s.m
		m.subMu.Lock()
		if s.group != "" {
			m.leaveLocked(s)
		} else {
			m.router.Remove(s.id)
		}
		delete(m.subs, s)
		if s.name != "" && m.named[s.name] == s {
			delete(m.named, s.name)
		}
		m.subMu.Unlock()
		close(s.closed)
		if s.lanes != nil {
			s.lanes.Close()
		}
	})
}

// SubscriptionStats are one subscription's counters.
type SubscriptionStats struct {
	Name      string
	Group     string // the group it is a member of, if any
	ID        uint64 // unique among the manager's subscriptions, never reused
	Policy    Policy
	Delivered uint64 // taken by the subscriber
	Matched   uint64 // offered to the queue
	Dropped   uint64 // lost to the policy
	Depth     int    // queued now
	Capacity  int
	// Lanes are the per-priority counters of a PolicyPriority
	// subscription (bulk, normal, high, critical).
	Lanes []route.LaneStats
}

// Stats returns the subscription's counters.
func (s *Subscription) Stats() SubscriptionStats {
	st := SubscriptionStats{
		Name: s.name, Group: s.group, ID: s.num, Policy: s.policy, Delivered: s.delivered.Load(), Matched: s.offered.Load(),
		Dropped: s.dropped.Load(),
	}
	if s.lanes != nil {
		ls := s.lanes.Stats()
		st.Lanes = ls[:]
		for _, l := range ls {
			st.Dropped += l.Shed + l.Rejected
			st.Depth += l.Queued
		}
		st.Capacity = s.q0cap
		return st
	}
	st.Depth, st.Capacity = s.q.len(), s.q.cap()
	return st
}
