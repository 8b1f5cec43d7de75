package route

import (
	"context"
	"sync"

	"github.com/semprop/semprop/event"
)

// laneCount is the number of priority lanes: bulk, normal, high, critical.
const laneCount = 4

func laneOf(p event.Priority) int {
	switch {
	case p <= event.PriorityBulk:
		return 0
	case p >= event.PriorityCritical:
		return 3
	}
	return int(p) + 1
}

// LaneStats counts one lane's traffic.
type LaneStats struct {
	Queued   int    // items waiting now
	Pushed   uint64 // items accepted
	Shed     uint64 // items accepted and later evicted to make room for a higher lane
	Rejected uint64 // items refused because the queue was full of equal or higher priority
}

// Lanes is a bounded queue with four priority lanes (bulk, normal, high,
// critical) sharing one capacity. Pop always takes from the highest
// non-empty lane, so a critical item never waits behind bulk ones. When
// the queue is full, a push evicts the oldest item of the lowest non-empty
// lane below its own (bulk first) and counts it as shed; if every queued
// item has equal or higher priority, the push is refused and counted as
// rejected. Items of one lane stay in FIFO order.
//
// Lanes is safe for concurrent use by any number of producers and
// consumers; Push never blocks.
type Lanes[E any] struct {
	ready chan struct{} // one token: something may be queued

	mu     sync.Mutex // guards the fields below
	lanes  [laneCount]ring[E]
	stats  [laneCount]LaneStats
	total  int
	cap    int
	closed bool
}

type ring[E any] struct {
	buf        []E
	head, size int
}

func (r *ring[E]) push(e E) {
	if r.size == len(r.buf) {
		n := max(8, 2*len(r.buf))
		buf := make([]E, n)
		for i := range r.size {
			buf[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = buf, 0
	}
	r.buf[(r.head+r.size)%len(r.buf)] = e
	r.size++
}

func (r *ring[E]) pop() E {
	var zero E
	e := r.buf[r.head]
	r.buf[r.head] = zero
	r.head = (r.head + 1) % len(r.buf)
	r.size--
	return e
}

// NewLanes returns an empty queue holding at most capacity items.
func NewLanes[E any](capacity int) *Lanes[E] {
	return &Lanes[E]{cap: max(1, capacity), ready: make(chan struct{}, 1)}
}

// Push queues e in the lane of priority p. It reports whether e was
// queued; false means the queue is full of items of equal or higher
// priority, or closed.
func (q *Lanes[E]) Push(p event.Priority, e E) bool {
	l := laneOf(p)
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return false
	}
	if q.total >= q.cap {
		victim := -1
		for v := 0; v < l; v++ {
			if q.lanes[v].size > 0 {
				victim = v
				break
			}
		}
		if victim < 0 {
			q.stats[l].Rejected++
			q.mu.Unlock()
			return false
		}
		q.lanes[victim].pop()
		q.stats[victim].Shed++
		q.total--
	}
	q.lanes[l].push(e)
	q.stats[l].Pushed++
	q.total++
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// TryPop takes the oldest item of the highest non-empty lane, if any.
func (q *Lanes[E]) TryPop() (E, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.popLocked()
}

func (q *Lanes[E]) popLocked() (E, bool) {
	for l := laneCount - 1; l >= 0; l-- {
		if q.lanes[l].size > 0 {
			q.total--
			return q.lanes[l].pop(), true
		}
	}
	var zero E
	return zero, false
}

// Pop waits for an item and takes the oldest of the highest non-empty
// lane. It returns ErrClosed once the queue is closed and empty, or the
// context's error.
func (q *Lanes[E]) Pop(ctx context.Context) (E, error) {
	for {
		q.mu.Lock()
		e, ok := q.popLocked()
		more, closed := q.total > 0, q.closed
		q.mu.Unlock()
		if ok {
			if more {
				q.signal()
			}
			return e, nil
		}
		if closed {
			q.signal() // wake the next waiting consumer too
			var zero E
			return zero, ErrClosed
		}
		select {
		case <-q.ready:
		case <-ctx.Done():
			var zero E
			return zero, ctx.Err()
		}
	}
}

// PopBatch appends up to max queued items, highest lane first, to buf
// without waiting, and returns it.
func (q *Lanes[E]) PopBatch(buf []E, max int) []E {
	q.mu.Lock()
	defer q.mu.Unlock()
	for range max {
		e, ok := q.popLocked()
		if !ok {
			break
		}
		buf = append(buf, e)
	}
	return buf
}

func (q *Lanes[E]) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Close refuses further pushes; queued items can still be popped.
func (q *Lanes[E]) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// Len returns the number of queued items.
func (q *Lanes[E]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.total
}

// Stats returns the counters of each lane, indexed bulk, normal, high,
// critical.
func (q *Lanes[E]) Stats() [laneCount]LaneStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.stats
	for l := range s {
		s[l].Queued = q.lanes[l].size
	}
	return s
}
