package propagate

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/semprop/semprop/event"
)

// ring is the bounded queue of one live subscription.
//
// Producers are serialized by the manager's order lock, so at any moment
// there is one producer and one consumer: the producer owns tail, the
// consumer advances head with a CAS, and the drop-oldest policy lets the
// producer advance head too (the consumer's CAS then fails and it retries).
// Slots are atomics so that a consumer that loses that race reads a value it
// discards, never a torn one.
type ring struct {
	slots []slot
	mask  uint64

	head atomic.Uint64 // next slot to read
	tail atomic.Uint64 // next slot to write

	// parked is 1 while the consumer is blocked (or about to block) on wake;
	// full is 1 while a blocked producer waits on space.
	parked atomic.Int32
	full   atomic.Int32
	wake   chan struct{}
	space  chan struct{}
}

type slot struct {
	ev atomic.Pointer[event.Event]
	at atomic.Int64 // monotonic nanoseconds at delivery, for the latency histogram
}

func newRing(size int) *ring {
	n := 1
	for n < size {
		n <<= 1
	}
	return &ring{slots: make([]slot, n), mask: uint64(n - 1), wake: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

func (r *ring) len() int { return int(r.tail.Load() - r.head.Load()) }

func (r *ring) cap() int { return len(r.slots) }

// pushResult says what a push did.
type pushResult uint8

const (
	pushed        pushResult = iota
	pushedDropped            // pushed after dropping the oldest queued event
	dropped                  // the event itself was dropped
)

// push adds ev under policy. With PolicyBlock it waits up to timeout for
// space, then drops ev. Only one goroutine may push at a time.
func (r *ring) push(ev *event.Event, at int64, policy Policy, timeout time.Duration) pushResult {
	t := r.tail.Load()
	res := pushed
	if t-r.head.Load() >= uint64(len(r.slots)) {
		switch policy {
		case PolicyDropNewest:
			return dropped
		case PolicyDropOldest:
			for {
				h := r.head.Load()
				if t-h < uint64(len(r.slots)) {
					break // the consumer made room meanwhile
				}
				if r.head.CompareAndSwap(h, h+1) {
					res = pushedDropped
					break
				}
			}
		case PolicyBlock:
			if !r.waitSpace(t, timeout) {
				return dropped
			}
		}
	}
	s := &r.slots[t&r.mask]
	s.at.Store(at)
	s.ev.Store(ev)
	r.tail.Store(t + 1)
	if r.parked.Load() != 0 && r.parked.CompareAndSwap(1, 0) {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	return res
}

func (r *ring) waitSpace(t uint64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for t-r.head.Load() >= uint64(len(r.slots)) {
		r.full.Store(1)
		if t-r.head.Load() < uint64(len(r.slots)) {
			break
		}
		left := time.Until(deadline)
		if left <= 0 {
			r.full.Store(0)
			return false
		}
		tm := time.NewTimer(left)
		select {
		case <-r.space:
		case <-tm.C:
		}
		tm.Stop()
	}
	r.full.Store(0)
	return true
}

// pop takes the oldest event, or reports false if the queue is empty.
func (r *ring) pop() (*event.Event, int64, bool) {
	for {
		h := r.head.Load()
		if h == r.tail.Load() {
			return nil, 0, false
		}
		s := &r.slots[h&r.mask]
		ev, at := s.ev.Load(), s.at.Load()
		if r.head.CompareAndSwap(h, h+1) {
			if r.full.Load() != 0 {
				select {
				case r.space <- struct{}{}:
				default:
				}
			}
			return ev, at, true
		}
	}
}

// spinFor is how long a consumer keeps re-checking an empty queue
// (yielding the processor between checks, so other goroutines run) before
// it parks: a consumer that took an event less than this ago sees the next
// one in a few hundred nanoseconds instead of paying a goroutine wake-up
// (microseconds). An idle subscription costs nothing once parked.
const spinFor = 20 * time.Microsecond

// hotSpin is the first part of spinFor, spent without yielding.
const hotSpin = 2 * time.Microsecond

// wait blocks until the queue is non-empty, ctx is done or closed is closed.
func (r *ring) wait(ctx context.Context, closed <-chan struct{}) error {
	// Only a few subscribers spin at once (one per spare processor): with
	// many subscribers, spinning would take the processors from the
	// publisher and from each other.
	if spinners.Add(1) > maxSpinners {
		spinners.Add(-1)
		return r.park(ctx, closed)
	}
	err := r.spin()
	spinners.Add(-1)
	if err == nil {
		return nil
	}
	return r.park(ctx, closed)
}

var (
	spinners    atomic.Int32
	maxSpinners = int32(max(1, runtime.GOMAXPROCS(0)-1))
)

// errEmpty says spin gave up.
var errEmpty = errors.New("empty")

// spin waits up to spinFor for an event without parking.
func (r *ring) spin() error {
	start := nanotime()
	// First a tight spin on the tail (no scheduler round trip), then spin
	// yielding the processor, then park.
	for i := 0; ; i++ {
		if r.head.Load() != r.tail.Load() {
			return nil
		}
		if i&63 == 63 && nanotime()-start > int64(hotSpin) {
			break
		}
	}
	for i := 0; ; i++ {
		if r.head.Load() != r.tail.Load() {
			return nil
		}
		if i&15 == 15 && nanotime()-start > int64(spinFor) {
			break
		}
		runtime.Gosched()
	}
	return errEmpty
}

// park blocks until the queue is non-empty, ctx is done or closed is closed.
func (r *ring) park(ctx context.Context, closed <-chan struct{}) error {
	for {
		r.parked.Store(1)
		if r.head.Load() != r.tail.Load() {
			r.parked.Store(0)
			return nil
		}
		select {
		case <-r.wake:
		case <-ctx.Done():
			r.parked.Store(0)
			return ctx.Err()
		case <-closed:
			r.parked.Store(0)
			if r.head.Load() != r.tail.Load() {
				return nil
			}
			return ErrClosed
		}
		if r.head.Load() != r.tail.Load() {
			return nil
		}
	}
}
