package propagate

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/semprop/semprop/event"
)

// ring is the bounded queue of one live subscription.
//
// Producers are serialized by the manager's order lock, so at any moment
// there is one producer and one consumer. Each slot carries the position it
// holds plus one (Vyukov's bounded queue): the consumer learns that slot
// head is filled, and reads the event, from that one cache line, so a
// hand-off to a waiting consumer costs one cache-line transfer. tail is the
// producer's, head the consumer's, each on a line of its own; the producer
// reads head only when its cached copy says the ring is full. The
// drop-oldest policy lets the producer advance head too (with a CAS the
// consumer's CAS then loses); under that policy the event is read and
// written atomically, so that a consumer that loses that race reads a
// value it discards, never a torn one. Under the others the slot is the
// producer's alone until its seq is stored (and the consumer's alone from
// then until it moves head past it), so the event is a plain field: a push
// then makes one locked store to the slot's line, not two, and the
// producer waits for the line once (it is the line the consumer spins on).
type ring struct {
	slots  []slot
	mask   uint64
	oldest bool // PolicyDropOldest: the producer may reuse a slot being read
	wake   chan struct{}
	space  chan struct{}

	_         [cacheLine]byte
	tail      atomic.Uint64 // next position to publish (producer)
	headCache uint64        // producer's last read of head
	staged    uint64        // slots written from tail on, not yet published (stage)
	_         [cacheLine - 24]byte
	head      atomic.Uint64 // next position to read (consumer; producer under drop-oldest)
	_         [cacheLine - 8]byte

	// parked is 1 while the consumer is blocked (or about to block) on
	// wake; full is 1 while a blocked producer waits on space. Both are
	// written rarely and read on every push and pop.
	parked atomic.Int32
	full   atomic.Int32
	_      [cacheLine - 8]byte
}

// cacheLine separates data written by different goroutines; 128 bytes
// because adjacent-line prefetchers pull lines in pairs.
const cacheLine = 128

// slot is one queue entry; two share a 64-byte line. The event is in ev,
// or in evA when the ring is drop-oldest.
type slot struct {
	seq atomic.Uint64 // position+1 once the entry at position is written
	ev  *event.Event
	evA atomic.Pointer[event.Event]
	at  atomic.Int64 // monotonic nanoseconds at delivery, for the latency histogram; 0: not sampled
}

// newRing returns a queue of at least size slots for a subscription with
// policy.
func newRing(size int, policy Policy) *ring {
	n := 1
	for n < size {
		n <<= 1
	}
	r := &ring{slots: make([]slot, n), mask: uint64(n - 1), oldest: policy == PolicyDropOldest, wake: make(chan struct{}, 1), space: make(chan struct{}, 1)}
	r.touch()
	return r
}

// pageSlots is how many slots share a 4 KiB page.
const pageSlots = 4096 / int(unsafe.Sizeof(slot{}))

// touch writes to every page of the slots, so that the kernel maps them
// now (a large queue comes from fresh memory, mapped on first write)
// rather than on the publisher's path: there, a page fault every 128
// events, for every subscriber at once, delayed a delivery by tens of
// microseconds (the 99th percentile of a publish to ten subscribers). A
// subscription's queue costs its full size in memory from Subscribe on,
// instead of once it has been filled once.
func (r *ring) touch() {
	for i := 0; i < len(r.slots); i += pageSlots {
		r.slots[i].seq.Store(0)
	}
	r.slots[len(r.slots)-1].seq.Store(0) // a small queue may straddle two pages
}

func (r *ring) len() int { return int(r.tail.Load() - r.head.Load()) }

func (r *ring) cap() int { return len(r.slots) }

// ready reports whether the entry at head is written: the queue is not
// empty.
func (r *ring) ready() bool {
	h := r.head.Load()
	return r.slots[h&r.mask].seq.Load() >= h+1
}

// put stores ev in s; oldest says the ring is drop-oldest.
func (s *slot) put(ev *event.Event, oldest bool) {
	if oldest {
		s.evA.Store(ev)
	} else {
		s.ev = ev
	}
}

// get loads the event put in s.
func (s *slot) get(oldest bool) *event.Event {
	if oldest {
		return s.evA.Load()
	}
	return s.ev
}

// pushResult says what a push did.
type pushResult uint8

const (
	pushed        pushResult = 0
	pushedDropped pushResult = 1 // pushed after dropping the oldest queued event
	dropped       pushResult = 2 // the event itself was dropped
	// pushedWake is or-ed in when the consumer is parked: the caller must
	// call signal (after its other work, so that the consumer is the
	// goroutine that runs next).
	pushedWake pushResult = 4
)

// push adds ev under policy. With PolicyBlock it waits up to timeout for
// space, then drops ev. Only one goroutine may push at a time.
func (r *ring) push(ev *event.Event, at int64, policy Policy, timeout time.Duration) pushResult {
	t := r.tail.Load()
	res := pushed
	size := uint64(len(r.slots))
	if t-r.headCache >= size {
		r.headCache = r.head.Load()
	}
	if t-r.headCache >= size {
		switch policy {
		case PolicyDropNewest:
			return dropped
		case PolicyDropOldest:
			for {
				h := r.head.Load()
				if t-h < size {
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
		r.headCache = r.head.Load()
	}
	s := &r.slots[t&r.mask]
	if s.at.Load() != at { // mostly 0 and 0: a load is cheaper than a store
		s.at.Store(at)
	}
	s.put(ev, r.oldest)
	s.seq.Store(t + 1)
	r.tail.Store(t + 1)
	if r.parked.Load() != 0 && r.parked.CompareAndSwap(1, 0) {
		res |= pushedWake
	}
	return res
}

// stage is push for one event of a delivery of several: it writes ev into
// the slot after the staged ones without publishing it, and publish then
// makes all of them visible at once. A consumer waiting on the queue spins
// on the slot at head; pushed one by one, a batch's slots would move
// between the two processors' caches once per event (the producer writes
// the slot the consumer is reading, the consumer takes it and reads the
// next, which shares the line); staged, each line moves once. Only the
// producer may stage; it must publish before it lets go of the ring.
func (r *ring) stage(ev *event.Event, at int64, policy Policy, timeout time.Duration) pushResult {
	t := r.tail.Load() + r.staged
	if size := uint64(len(r.slots)); t-r.headCache >= size {
		if r.headCache = r.head.Load(); t-r.headCache >= size {
			// Full: what is staged goes out first, then ev as a push
			// (which drops or waits under the policy).
			return r.publish() | r.push(ev, at, policy, timeout)
		}
	}
	s := &r.slots[t&r.mask]
	if s.at.Load() != at {
		s.at.Store(at)
	}
	s.put(ev, r.oldest)
	r.staged++
	return pushed
}

// publish makes the staged events visible to the consumer: their seqs
// last to first, so that the consumer, watching the first, finds all of
// them written when it sees it. It reports pushedWake when the consumer
// is parked.
func (r *ring) publish() pushResult {
	n := r.staged
	if n == 0 {
		return pushed
	}
	t := r.tail.Load()
	for i := n; i > 0; i-- {
		r.slots[(t+i-1)&r.mask].seq.Store(t + i)
	}
	r.tail.Store(t + n)
	r.staged = 0
	if r.parked.Load() != 0 && r.parked.CompareAndSwap(1, 0) {
		return pushedWake
	}
	return pushed
}

// signal wakes a parked consumer; push said to (pushedWake).
func (r *ring) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *ring) waitSpace(t uint64, timeout time.Duration) bool {
	// The consumer may be parked, its wake-up put off until the end of
	// this delivery (pushedWake): it must run now to make room.
	r.signal()
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
		s := &r.slots[h&r.mask]
		seq := s.seq.Load()
		if seq < h+1 {
			return nil, 0, false // not written yet
		}
		ev, at := s.get(r.oldest), s.at.Load()
		// seq > h+1: the producer dropped h and reused the slot (drop-oldest);
		// head has moved on and the CAS fails.
		if seq == h+1 && r.head.CompareAndSwap(h, h+1) {
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

// popBatch takes up to len(buf) of the oldest events, stores them in buf
// and returns how many, with the first one's delivery time; 0 if the queue
// is empty. It moves head once for all of them.
func (r *ring) popBatch(buf []*event.Event) (int, int64) {
	for {
		h := r.head.Load()
		n := 0
		var at int64
		for n < len(buf) {
			s := &r.slots[(h+uint64(n))&r.mask]
			if s.seq.Load() != h+uint64(n)+1 {
				// Not written yet, or (drop-oldest) the producer dropped
				// and reused it: then head has moved and the CAS fails.
				break
			}
			buf[n] = s.get(r.oldest)
			if n == 0 {
				at = s.at.Load()
			}
			n++
		}
		if n == 0 {
			if r.slots[h&r.mask].seq.Load() > h+1 {
				continue // the producer dropped h meanwhile
			}
			return 0, 0
		}
		if r.head.CompareAndSwap(h, h+uint64(n)) {
			if r.full.Load() != 0 {
				select {
				case r.space <- struct{}{}:
				default:
				}
			}
			return n, at
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
	// First a tight spin on the head slot (no scheduler round trip), then spin
	// yielding the processor, then park.
	for i := 0; ; i++ {
		if r.ready() {
			return nil
		}
		if i&63 == 63 && nanotime()-start > int64(hotSpin) {
			break
		}
	}
	for i := 0; ; i++ {
		if r.ready() {
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
		if r.ready() {
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
			if r.ready() {
				return nil
			}
			return ErrClosed
		}
		if r.ready() {
			return nil
		}
	}
}
