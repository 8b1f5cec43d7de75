package api

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/semprop/semprop/internal/propagate"
)

// Settled durable consumers (the spec's "settle"): a fetch returns one
// delivery per burst on a subject, as a settled stream sends one event
// (see settle.go): the last event of the burst with "count" and "first",
// its seq, and the highest attempt of the events it stands for. Acking it
// acks every event of the burst.
//
// The events of a burst are deliveries of the underlying consumer, in
// flight while the burst settles: so a burst is delivered once its subject
// has been quiet for the settle time, or once its first event has been
// held for half the ack wait (a longer burst is delivered in parts, before
// the underlying consumer could deliver its events again), and it holds at
// most the consumer's max ack pending (1000) events. Nothing is kept on
// disk: after a restart, or when the settled delivery is not acked within
// the ack wait, the underlying consumer delivers the events again and they
// settle again (at least once, as for any consumer).

// settleField names the spec's settle time in errors.
const settleField = "settle"

// settle parses the spec's settle time (0: not settled).
func (spec consumerSpec) settle() (time.Duration, *apiError) {
	if spec.Settle == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(spec.Settle)
	if err != nil || d < time.Millisecond || d > maxSettle {
		return 0, &apiError{Field: settleField, Error: "settle " + strconv.Quote(spec.Settle) + ": want a duration from 1ms to 1m, such as 200ms"}
	}
	wait, aerr := spec.ackWait()
	if aerr != nil {
		return 0, aerr
	}
	if wait == 0 {
		wait = defaultAckWait
	}
	if d >= wait {
		return 0, &apiError{Field: settleField, Error: "settle " + spec.Settle + " must be shorter than ack_wait (" + wait.String() + ")"}
	}
	return d, nil
}

// defaultAckWait is propagate's default ack wait.
const defaultAckWait = 30 * time.Second

// consumerSettler settles the deliveries of one open durable consumer. It
// is safe for concurrent use: fetches take turns (turn), acks do not
// wait for them.
type consumerSettler struct {
	c     *propagate.Consumer
	quiet time.Duration
	hold  time.Duration // the longest a burst's first event is held

	turn chan struct{} // holds one token: one fetch gathers and settles at a time

	// mu guards what follows; it is never held while waiting.
	mu sync.Mutex
	st *settler
	// held are the seqs in bursts not yet delivered: a redelivery of one
	// of them is not added twice.
	held map[uint64]struct{}
	// acks maps the seq of a settled delivery to the seqs it stands for,
	// until it is acked (or redelivered, which merges them).
	acks map[uint64][]uint64
}

// maxSettledAcks bounds the settled deliveries awaiting an ack; past it
// the oldest mapping is forgotten (its events are then redelivered after
// the ack wait and settle again).
const maxSettledAcks = 1 << 16

func newConsumerSettler(c *propagate.Consumer, quiet, ackWait time.Duration) *consumerSettler {
	if ackWait <= 0 {
		ackWait = defaultAckWait
	}
	st := newSettler(quiet)
	st.track = true
	return &consumerSettler{
		c: c, quiet: quiet, hold: max(ackWait/2, quiet), turn: make(chan struct{}, 1),
		st: st, held: make(map[uint64]struct{}), acks: make(map[uint64][]uint64),
	}
}

// fetch returns up to max settled deliveries, waiting until ctx is done
// for the first (then none and no error).
func (cs *consumerSettler) fetch(ctx context.Context, max int) ([]propagate.Delivery, error) {
	select {
	case cs.turn <- struct{}{}:
		defer func() { <-cs.turn }()
	case <-ctx.Done():
		return nil, nil // another fetch holds the turn for as long as this one waits
	}
	nowCtx, stop := context.WithCancel(ctx)
	stop() // the underlying Fetch then takes only what is ready
	for {
		// Take what the underlying consumer has ready, without waiting.
		for {
			ds, err := cs.c.Fetch(nowCtx, 1000)
			if err != nil && !isCtxErr(err) {
				return nil, err
			}
			if len(ds) == 0 {
				break
			}
			cs.addAll(ds)
		}
		if out := cs.due(time.Now(), max); len(out) > 0 {
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		// Wait for more, or until the next burst is due.
		at, ok := cs.next()
		if !ok {
			at = time.Now().Add(time.Hour) // ctx ends it sooner
		}
		wctx, cancel := context.WithDeadline(ctx, at)
		ds, err := cs.c.Fetch(wctx, 1000)
		cancel()
		if err != nil && !isCtxErr(err) {
			return nil, err
		}
		cs.addAll(ds)
	}
}

func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// addAll puts deliveries into their bursts.
func (cs *consumerSettler) addAll(ds []propagate.Delivery) {
	if len(ds) == 0 {
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	now := time.Now()
	for _, d := range ds {
		if _, dup := cs.held[d.Seq]; dup {
			continue
		}
		cs.held[d.Seq] = struct{}{}
		d.Event.Seq = d.Seq
		if b := cs.st.add(d.Event, d.Attempt, now); b != nil {
			// Past maxSettleKeys: the oldest burst is delivered early, at
			// the next fetch. Put it back as due at once.
			b.at, b.since = time.Time{}, time.Time{}
			cs.st.byKey[b.key] = cs.st.order.PushFront(b)
		}
	}
}

// due removes and returns up to max bursts that are quiet or held long
// enough, as deliveries, oldest first.
func (cs *consumerSettler) due(now time.Time, max int) []propagate.Delivery {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var out []propagate.Delivery
	for e := cs.st.order.Front(); e != nil && len(out) < max; {
		next := e.Next()
		b := e.Value.(*burst)
		if !b.at.Add(cs.quiet).After(now) || !b.since.Add(cs.hold).After(now) {
			cs.st.order.Remove(e)
			delete(cs.st.byKey, b.key)
			out = append(out, cs.deliverLocked(b))
		}
		e = next
	}
	return out
}

// deliverLocked turns a burst into a delivery and remembers what it
// stands for; cs.mu is held.
func (cs *consumerSettler) deliverLocked(b *burst) propagate.Delivery {
	ev := b.event()
	for _, s := range b.seqs {
		delete(cs.held, s)
	}
	if old, ok := cs.acks[ev.Seq]; ok {
		b.seqs = mergeSeqs(old, b.seqs)
	} else if len(cs.acks) >= maxSettledAcks {
		for k := range cs.acks { // an arbitrary one: see maxSettledAcks
			delete(cs.acks, k)
			break
		}
	}
	cs.acks[ev.Seq] = b.seqs
	return propagate.Delivery{Event: ev, Seq: ev.Seq, Attempt: max(b.attempt, 1)}
}

// mergeSeqs returns the seqs of a and b, each once.
func mergeSeqs(a, b []uint64) []uint64 {
	seen := make(map[uint64]struct{}, len(a))
	for _, s := range a {
		seen[s] = struct{}{}
	}
	for _, s := range b {
		if _, ok := seen[s]; !ok {
			a = append(a, s)
		}
	}
	return a
}

// next is when the first burst is due (ok false when none settles).
func (cs *consumerSettler) next() (time.Time, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var at time.Time
	for e := cs.st.order.Front(); e != nil; e = e.Next() {
		b := e.Value.(*burst)
		t := b.at.Add(cs.quiet)
		if h := b.since.Add(cs.hold); h.Before(t) {
			t = h
		}
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	return at, !at.IsZero()
}

// ack acknowledges seq: every event of the settled delivery seq, or seq
// itself when it is not a settled delivery's.
func (cs *consumerSettler) ack(seq uint64) error {
	cs.mu.Lock()
	seqs, ok := cs.acks[seq]
	delete(cs.acks, seq)
	cs.mu.Unlock()
	if !ok {
		return cs.c.Ack(seq)
	}
	for _, s := range seqs {
		if err := cs.c.Ack(s); err != nil {
			return err
		}
	}
	return nil
}
