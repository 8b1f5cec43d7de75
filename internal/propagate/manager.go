// Package propagate is semprop's propagation manager: it takes published
// events, fills what is missing (ID, time, HLC, source), hands them to a
// Sequencer that orders them and makes them durable, and fans them out to
// live subscriptions through a routing table (package route) and to
// durable consumers through the journal.
//
// # Ordering and delivery guarantees
//
// Every event gets a Seq from the Sequencer; seqs are consecutive and are the
// one total order of the instance (or the cluster). Live subscriptions
// receive matching events in seq order, as soon as they are sequenced and
// possibly before they are durable (docs/architecture.md, "What may be seen
// before it is durable"); they live and die with the process. A write the
// journal refuses (a full disk) uses no seq and delivers nothing. Each live
// subscription has a bounded queue and a Policy that says what happens when
// it is full:
//
//   - PolicyDropNewest (default): the new event is dropped for that subscriber.
//   - PolicyDropOldest: the oldest queued event is dropped to make room.
//   - PolicyBlock: the publisher waits up to the subscription's BlockTimeout
//     for room, then drops the new event. Because delivery is in seq order
//     for all subscribers, a blocked subscriber holds up every publisher
//     for at most that timeout; the other policies never hold up anyone.
//   - PolicyPriority: four lanes by event priority; the subscriber always
//     takes critical events first, then high, normal and bulk; a full
//     queue sheds the oldest event of the lowest lane below the new one
//     (bulk first) and refuses the new event when everything queued ranks
//     as high or higher.
//
// Every dropped, shed or refused event is counted on its subscription.
//
// Live subscriptions may form groups (SubscribeOptions.Group, AddRoutes
// with a route without targets): each event of the group's route goes to
// exactly one live member, by the route's strategy; a member that leaves
// (Subscription.Leave) hands what it did not pass on back to the others.
// See group.go. The HTTP API's group streams write an event only once it
// is durable, like every stream that leaves the process.
// Durable consumers (Consumer) read only durable events from the journal
// at a persisted cursor, with explicit acknowledgement, redelivery after
// AckWait and a dead letter in the consumer's own state after MaxDeliver
// deliveries; they never lose an event. A Reader reads the durable stream
// from a seq, without a cursor.
//
// Publish and PublishBatch return once the events are durable (per the
// journal's fsync policy) with their seqs set; with a cluster sequencer,
// durable means committed on a quorum, and the local journal's fsync may
// follow.
//
// # Idempotent ingest
//
// With Options.Dedup.Window set, an event published again with the same
// source and id (the producer's CloudEvents id) while its first copy is in
// the window is not stored, sequenced or delivered again: Publish and
// PublishBatch answer it with the first copy's seq, once that one is
// durable. The window is rebuilt from the journal when the manager opens,
// so it survives a restart; see dedup.go.
package propagate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/metrics"
	"github.com/semprop/semprop/internal/nanoclock"
	"github.com/semprop/semprop/internal/route"
)

// Errors returned by the manager.
var (
	ErrClosed      = errors.New("propagate: closed")
	ErrInvalidType = errors.New("propagate: invalid event type")
	ErrNoConsumer  = errors.New("propagate: no such consumer")
	ErrBusy        = errors.New("propagate: consumer is in use")
	// ErrUnavailable is wrapped by sequencer errors that mean "cannot
	// order events now, try later" (a cluster without quorum); the HTTP
	// API answers 503.
	ErrUnavailable = errors.New("propagate: unavailable")
)

// Sequencer orders events: it assigns each event its Seq, passes the events
// to the manager's delivery in seq order (before they are durable), and
// returns once they are durable. The local sequencer appends to the journal;
// a cluster sequencer replicates through Raft and delivers on apply.
type Sequencer interface {
	Sequence(ctx context.Context, evs []*event.Event) error
}

// Window is idempotent ingest's memory of sequenced events, as the manager
// hands it to a Sequencer that implements WindowUser.
type Window interface {
	// Key identifies ev among the events it could repeat: its source and
	// its producer's id. Two events with the same key are copies.
	Key(ev *event.Event) [2]uint64
	// Lookup returns the seq of the remembered event key names.
	Lookup(key [2]uint64) (seq uint64, ok bool)
	// Duplicates counts n publishes answered without storing them.
	Duplicates(n int)
}

// WindowUser is implemented by a Sequencer that judges copies itself where
// the order is decided (a cluster node, when it is the leader): the
// manager hands it its idempotent-ingest window once, before the first
// Sequence call, when idempotent ingest is on.
type WindowUser interface {
	UseWindow(w Window)
}

// Deliver is the manager's delivery hook, handed to a Sequencer's
// constructor. It must be called with events in seq order, never
// concurrently with itself.
type Deliver func(evs []*event.Event)

// Options configure a Manager.
type Options struct {
	// Journal is the local journal: the Sequencer's destination for the
	// local sequencer and the read side (durable consumers, replay) always.
	Journal *journal.Journal
	// NewSequencer builds the sequencer; nil means the local one.
	NewSequencer func(Deliver) (Sequencer, error)
	// Dir holds durable consumer state; consumers are unavailable if empty.
	Dir string
	// Source is the CloudEvents source given to events that have none.
	Source string
	// Clock issues HLC timestamps; nil means a new event.NewClock(0).
	Clock *event.Clock
	// Dedup configures idempotent ingest; the zero value disables it.
	Dedup  DedupOptions
	Logger *slog.Logger
}

// Manager publishes events and fans them out. It is safe for concurrent use.
type Manager struct {
	j      *journal.Journal
	seq    Sequencer
	local  *localSequencer // seq when it is the local one: a direct call keeps Publish allocation-free
	clock  *event.Clock
	source string
	dir    string
	log    *slog.Logger
	dedup  *dedup // nil: idempotent ingest is off

	// router decides which live subscriptions get an event: one route per
	// subscription (its selector) plus dynamic routes to named ones.
	router *route.Router[*Subscription]

	// deliverMu is held by every delivery and by a group member that
	// leaves, so that no event is routed to it after it drained its
	// queue. Lock order: deliverMu, then subMu.
	deliverMu sync.Mutex

	subMu  sync.Mutex // guards the fields below
	subs   map[*Subscription]struct{}
	named  map[string]*Subscription
	groups map[string]*group
	nextID uint64

	consumerMu sync.Mutex
	consumers  map[string]*Consumer

	readerMu   sync.Mutex // guards the fields below
	readers    map[*Reader]struct{}
	nextReader uint64

	published   atomic.Uint64
	publishTime metrics.Histogram // Publish/PublishBatch call → durable
	latency     Histogram         // sequenced → taken by a live subscriber, sampled
	// deliveries counts deliver calls (made one at a time) to sample latency.
	deliveries uint64
	// toWake collects the parked subscribers of one delivery.
	toWake []*ring
	// staged lists the queues holding staged events of the delivery
	// under way (deliverMu).
	staged []*ring

	closeOnce sync.Once
	closed    chan struct{}
}

// New returns a Manager over opts.Journal.
func New(opts Options) (*Manager, error) {
	if opts.Journal == nil {
		return nil, errors.New("propagate: Options.Journal is required")
	}
	m := &Manager{
		j:         opts.Journal,
		clock:     opts.Clock,
		source:    opts.Source,
		dir:       opts.Dir,
		log:       opts.Logger,
		consumers: make(map[string]*Consumer),
		readers:   make(map[*Reader]struct{}),
		closed:    make(chan struct{}),
	}
	if m.clock == nil {
		m.clock = event.NewClock(0)
	}
	if m.source == "" {
		host, _ := os.Hostname()
		m.source = "semprop://" + host
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.router = route.New(route.Options[*Subscription]{TargetName: (*Subscription).label})
	m.subs = make(map[*Subscription]struct{})
	m.groups = make(map[string]*group)
	m.named = make(map[string]*Subscription)
	// The window before the sequencer: a cluster sequencer applies (and
	// calls the delivery hook, which records into it) as soon as it opens.
	if m.dedup = newDedup(opts.Dedup); m.dedup != nil {
		if err := m.dedup.rebuild(opts.Journal); err != nil {
			return nil, err
		}
	}
	if opts.NewSequencer == nil {
		m.local = &localSequencer{j: opts.Journal, m: m}
		m.seq = m.local
	} else {
		s, err := opts.NewSequencer(func(evs []*event.Event) {
			if m.dedup != nil {
				m.dedup.record(evs)
			}
			m.deliver(evs)
			m.wakeParked()
		})
		if err != nil {
			return nil, fmt.Errorf("propagate: sequencer: %w", err)
		}
		if wu, ok := s.(WindowUser); ok && m.dedup != nil {
			wu.UseWindow(m.dedup)
		}
		m.seq = s
	}
	if m.dir != "" {
		if err := os.MkdirAll(filepath.Join(m.dir, "consumers"), 0o755); err != nil {
			return nil, fmt.Errorf("propagate: %w", err)
		}
	}
	return m, nil
}

// Journal returns the journal the manager reads from.
func (m *Manager) Journal() *journal.Journal { return m.j }

// Clock returns the manager's HLC clock.
func (m *Manager) Clock() *event.Clock { return m.clock }

// Publish sequences ev and returns its seq once it is durable. Missing ID,
// Time, HLC and Source are filled in. The caller must not modify ev
// afterwards: subscribers share it. Publish checks only the type syntax;
// events from untrusted sources must pass event.Validate first.
func (m *Manager) Publish(ctx context.Context, ev *event.Event) (uint64, error) {
	if m.local == nil {
		if err := m.PublishBatch(ctx, []*event.Event{ev}); err != nil {
			return 0, err
		}
		return ev.Seq, nil
	}
	// The local path keeps the one-element batch on the stack.
	start := nanotime()
	one := [1]*event.Event{ev}
	if err := m.prepare(one[:], start); err != nil {
		return 0, err
	}
	stored, err := m.local.sequence(ctx, one[:])
	if err != nil {
		return 0, err
	}
	m.published.Add(uint64(stored))
	m.publishTime.Observe(nanotime() - start)
	return ev.Seq, nil
}

// prepare checks evs' types and fills in what their publisher left out;
// start is the publish's nanotime reading, which the HLCs derive from.
func (m *Manager) prepare(evs []*event.Event, start int64) error {
	select {
	case <-m.closed:
		return ErrClosed
	default:
	}
	need := 0
	var valid string // the last type checked: a batch's events mostly share one
	for i, ev := range evs {
		if i == 0 || ev.Type != valid {
			if !event.ValidType(ev.Type) {
				return fmt.Errorf("%w: %q", ErrInvalidType, ev.Type)
			}
			valid = ev.Type
		}
		if ev.HLC.IsZero() {
			need++
		}
	}
	// No clock read of its own: HLCs are reserved as a run from the
	// publish's start reading, and IDs and times derive from them.
	var next event.HLC
	if need > 0 {
		next = m.clock.ReserveAt(need, start)
	}
	// The reserved run shares one wall time: its events' new ids are made
	// a chunk at a time (one lock of the id generator per chunk).
	var ids [32]event.ID
	nextID := len(ids)
	for _, ev := range evs {
		reserved := ev.HLC.IsZero()
		if reserved {
			ev.HLC = next
			next.Logical++
			need--
		}
		switch {
		case !ev.ID.IsZero():
		case reserved:
			if nextID == len(ids) {
				event.NewIDsAt(next.Wall, ids[:min(len(ids), need+1)])
				nextID = 0
			}
			ev.ID, nextID = ids[nextID], nextID+1
		default:
			ev.ID = event.NewIDAt(ev.HLC.Wall)
		}
		if ev.Time.IsZero() {
			ev.Time = time.Unix(0, ev.HLC.Wall).UTC()
		}
		if ev.Source == "" {
			ev.Source = m.source
		}
	}
	return nil
}

// PublishBatch sequences evs as one batch (consecutive seqs, in order) and
// returns once all are durable, with each event's Seq set.
func (m *Manager) PublishBatch(ctx context.Context, evs []*event.Event) error {
	if len(evs) == 0 {
		return nil
	}
	start := nanotime()
	if err := m.prepare(evs, start); err != nil {
		return err
	}
	var (
		stored int
		err    error
	)
	if m.local != nil {
		stored, err = m.local.sequence(ctx, evs)
	} else {
		stored, err = m.sequenceRemote(ctx, evs)
	}
	if err != nil {
		return err
	}
	m.published.Add(uint64(stored))
	m.publishTime.Observe(nanotime() - start)
	return nil
}

// sequenceRemote sequences evs through a sequencer other than the local
// one, leaving out the duplicates the window knows of. The window learns of
// sequenced events through the delivery hook; copies published at once on
// two nodes are caught only where the sequencer checks them (its leader).
func (m *Manager) sequenceRemote(ctx context.Context, evs []*event.Event) (int, error) {
	fresh, dupOf := evs, []int(nil)
	if m.dedup != nil {
		fresh, dupOf = m.dedup.filter(evs)
	}
	if len(fresh) > 0 {
		if err := m.seq.Sequence(ctx, fresh); err != nil {
			return 0, err
		}
	}
	resolve(evs, dupOf)
	if len(fresh) < len(evs) {
		// A copy's first was sequenced, perhaps not yet durable here.
		if err := m.j.WaitDurable(ctx, maxSeq(evs)); err != nil {
			return 0, fmt.Errorf("propagate: journal: %w", err)
		}
	}
	return len(fresh), nil
}

func maxSeq(evs []*event.Event) uint64 {
	var s uint64
	for _, ev := range evs {
		s = max(s, ev.Seq)
	}
	return s
}

// deliver fans evs out to the live subscriptions through the routing
// table. The sequencer calls it in seq order, one call at a time.
func (m *Manager) deliver(evs []*event.Event) {
	if m.router.Table().Len() == 0 {
		return
	}
	m.deliverMu.Lock()
	defer m.deliverMu.Unlock()
	t := m.router.Table() // after the lock: no group member is leaving
	if t.Len() == 0 {
		return
	}
	// One delivery in latencySample is timed: two clock reads would be a
	// fifth of the hand-off to a waiting subscriber.
	var at int64
	if m.deliveries++; m.deliveries%latencySample == 0 {
		at = nanotime()
	}
	if len(evs) == 1 {
		route.RouteArg(t, evs[0], at, offer)
		return
	}
	// A batch's events mostly share a type: its routes are looked up once.
	route.RouteBatchArg(t, evs, at, offerStaged)
	m.publishStaged()
}

// publishStaged publishes the events a delivery staged (offerStaged) and
// adds the subscribers it finds parked to toWake.
func (m *Manager) publishStaged() {
	for i, r := range m.staged {
		if r.publish()&pushedWake != 0 {
			m.toWake = append(m.toWake, r)
		}
		m.staged[i] = nil
	}
	m.staged = m.staged[:0]
}

// wakeParked wakes the subscribers that were parked when the last deliver
// queued for them. Waking them last makes a woken subscriber the goroutine
// that runs next on this processor (after, e.g., the journal's flusher that
// the journal write woke).
func (m *Manager) wakeParked() {
	for i, r := range m.toWake {
		r.signal()
		m.toWake[i] = nil
	}
	m.toWake = m.toWake[:0]
}

// localSequencer orders events by appending them to the local journal.
type localSequencer struct {
	j  *journal.Journal
	m  *Manager
	mu sync.Mutex // makes journal order and delivery order the same
}

var _ Sequencer = (*localSequencer)(nil)

func (l *localSequencer) Sequence(ctx context.Context, evs []*event.Event) error {
	_, err := l.sequence(ctx, evs)
	return err
}

// sequence sequences evs and returns how many were stored: all but the
// duplicates idempotent ingest answered from its window.
func (l *localSequencer) sequence(ctx context.Context, all []*event.Event) (int, error) {
	l.mu.Lock()
	var (
		first uint64
		err   error
		evs   = all
		dupOf []int
	)
	if d := l.m.dedup; d != nil {
		evs, dupOf = d.reserve(all)
		if len(evs) == 0 {
			l.mu.Unlock()
			resolve(all, dupOf)
			if err := l.j.WaitDurable(ctx, maxSeq(all)); err != nil {
				return 0, fmt.Errorf("propagate: journal: %w", err)
			}
			return 0, nil
		}
	}
	if len(evs) <= deliverFirstMax && l.encodable(evs) {
		// The fast path: live subscribers get the events before they are
		// encoded into the journal, so a waiting subscriber does not wait
		// for the encoding. They get them from inside Write, once it has
		// assigned the seqs and passed its refusal checks (a full disk, a
		// sticky I/O error, Close): a refused Write uses no seq and
		// delivers nothing, so a seq a subscriber saw is never given to
		// another event. Encoding cannot fail after that (sizes checked).
		// Delivery runs under the journal's write lock; with
		// PolicyBlock it may hold it up to the subscriber's BlockTimeout,
		// as it holds up every publisher anyway.
		first, err = l.j.Write(len(evs), func(i int, seq uint64, dst []byte) ([]byte, error) {
			if i == 0 {
				for k, ev := range evs {
					ev.Seq = seq + uint64(k)
				}
				l.m.deliver(evs)
			}
			return evs[i].AppendBinary(dst)
		})
		if err == nil {
			l.m.wakeParked()
		}
	} else {
		// A large batch, or one with an event that may not fit in a
		// record: encoded first, so that Write refuses a batch it cannot
		// take before anyone sees it.
		first, err = l.j.Write(len(evs), func(i int, seq uint64, dst []byte) ([]byte, error) {
			evs[i].Seq = seq
			return evs[i].AppendBinary(dst)
		})
		if err == nil {
			l.m.deliver(evs)
			l.m.wakeParked()
		}
	}
	if d := l.m.dedup; d != nil {
		if err == nil {
			d.record(evs)
		} else {
			d.release(evs)
		}
	}
	l.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("propagate: journal: %w", err)
	}
	if len(evs) > deliverFirstMax {
		// Written from here, a large batch is durable (unless fsync is
		// always) without the hand-off to the journal's flusher and back
		// (+20% events/s for one publisher of batches of 100). Small
		// publishes leave it to the flusher: a subscriber just woken for
		// them would wait for the write on this processor, and concurrent
		// publishers share one write(2) there. (With fsync never the
		// journal's segment is memory-mapped and Write has already copied
		// every publish's events into it: nothing is left to write here.)
		l.j.WriteOut()
	}
	last := first + uint64(len(evs)) - 1
	if len(evs) < len(all) {
		resolve(all, dupOf)
		last = max(last, maxSeq(all))
	}
	if err := l.j.WaitDurable(ctx, last); err != nil {
		return 0, fmt.Errorf("propagate: journal: %w", err)
	}
	return len(evs), nil
}

// deliverFirstMax is the largest batch delivered before it is encoded.
// For a few events the encoding is most of the publisher's path and a
// waiting subscriber should not wait for it; for a large batch it is
// amortized, and encoding first is faster overall (on 2 cores, a subscriber
// draining while the publisher encodes takes the processor the journal's
// flusher needs: -10% events/s at 256 per batch).
const deliverFirstMax = 16

// encodable reports whether every event surely fits in a journal record.
func (l *localSequencer) encodable(evs []*event.Event) bool {
	for _, ev := range evs {
		if ev.BinarySizeBound() > journal.MaxRecordSize {
			return false
		}
	}
	return true
}

// Live reports whether any live subscription or route exists, i.e.
// whether delivery has anyone to deliver to. A cluster follower may skip
// decoding committed events when it does not.
func (m *Manager) Live() bool { return m.router.Table().Len() > 0 }

// WantsCommitted reports whether events sequenced elsewhere (committed by
// a cluster through another node) must reach the delivery hook even with
// no live subscription: idempotent ingest remembers them there, so that a
// copy published to this node later, or judged here as the next leader,
// is recognised.
func (m *Manager) WantsCommitted() bool { return m.dedup != nil || m.Live() }

// Stats is a snapshot of the manager's counters.
type Stats struct {
	Published     uint64
	Subscriptions []SubscriptionStats
	Consumers     []ConsumerInfo
	Latency       HistogramSnapshot // sequenced → taken by a live subscriber
	Routing       route.Stats
	// Duplicates counts publishes answered from the idempotent-ingest
	// window (not stored again); DedupRemembered is the window's size.
	Duplicates      uint64
	DedupRemembered int
}

// Stats returns the manager's counters.
func (m *Manager) Stats() Stats {
	st := Stats{Published: m.published.Load(), Latency: m.latency.Snapshot()}
	m.subMu.Lock()
	for s := range m.subs {
		st.Subscriptions = append(st.Subscriptions, s.Stats())
	}
	m.subMu.Unlock()
	st.Routing = m.router.Stats()
	st.DedupRemembered, st.Duplicates = m.dedup.stats()
	m.consumerMu.Lock()
	for _, c := range m.consumers {
		st.Consumers = append(st.Consumers, c.Info())
	}
	m.consumerMu.Unlock()
	return st
}

// Close closes every subscription and consumer (persisting consumer
// cursors); later publishes fail with ErrClosed. It does not close the
// journal, which the caller owns.
func (m *Manager) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.closed)
		m.subMu.Lock()
		subs := make([]*Subscription, 0, len(m.subs))
		for s := range m.subs {
			subs = append(subs, s)
		}
		m.subMu.Unlock()
		for _, s := range subs {
			s.Close()
		}
		m.consumerMu.Lock()
		cs := make([]*Consumer, 0, len(m.consumers))
		for _, c := range m.consumers {
			cs = append(cs, c)
		}
		m.consumerMu.Unlock()
		for _, c := range cs {
			err = errors.Join(err, c.Close())
		}
	})
	return err
}

// latencySample: one deliver call in this many is timed for the latency
// histogram.
const latencySample = 16

// nanotime is a cheap monotonic clock (one clock read; time.Since makes
// two).
func nanotime() int64 { return nanoclock.Mono() }
