package enrich

import (
	"container/list"
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/semprop/semprop/event"
)

// Settler collapses bursts: events on one subject that follow each other
// within the quiet time become one event, the last of the burst (the last
// state), with AttrCount (how many) and AttrFirst (the time of the first)
// set, emitted once the subject has been quiet for the quiet time. Bursts
// of different subjects are emitted in the order they went quiet. Add is
// safe for concurrent use; Run is called once.
//
// The Settler does not modify the events it is given: the event it emits is
// a copy of the last with the two attributes added.
type Settler struct {
	quiet time.Duration
	max   int
	emit  func(*event.Event)
	now   func() time.Time

	mu    sync.Mutex
	byKey map[string]*list.Element
	order list.List // of *settling, least recently added first
	wake  chan struct{}
	done  bool
}

type settling struct {
	key   string
	last  *event.Event
	count int64
	first time.Time // the first event's time (when it was added if it has none)
	at    time.Time // when the last was added
}

// NewSettler returns a Settler that calls emit (from Run's goroutine) with
// each settled event. maxPaths bounds the subjects in a burst at once (0
// means 65536): past it the oldest burst is emitted early.
func NewSettler(quiet time.Duration, maxPaths int, emit func(*event.Event)) *Settler {
	if maxPaths <= 0 {
		maxPaths = 65536
	}
	return &Settler{quiet: quiet, max: maxPaths, emit: emit, now: time.Now,
		byKey: make(map[string]*list.Element), wake: make(chan struct{}, 1)}
}

// Add takes an event into its subject's burst. Events added after Run
// returned are emitted at once, without settling.
func (s *Settler) Add(ev *event.Event) {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		s.emit(ev)
		return
	}
	now := s.now()
	if e, ok := s.byKey[ev.Subject]; ok {
		st := e.Value.(*settling)
		st.last, st.at = ev, now
		st.count++
		s.order.MoveToBack(e)
		s.mu.Unlock()
		return
	}
	var early *settling
	if len(s.byKey) >= s.max {
		early = s.removeLocked(s.order.Front())
	}
	first := ev.Time
	if first.IsZero() {
		first = now
	}
	s.byKey[ev.Subject] = s.order.PushBack(&settling{key: ev.Subject, last: ev, count: 1, first: first, at: now})
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if early != nil {
		s.emit(early.event())
	}
}

func (s *Settler) removeLocked(e *list.Element) *settling {
	st := s.order.Remove(e).(*settling)
	delete(s.byKey, st.key)
	return st
}

func (st *settling) event() *event.Event {
	ev := *st.last
	ev.Attrs = append([]event.Attr(nil), st.last.Attrs...)
	ev.SetAttr(AttrCount, strconv.FormatInt(st.count, 10))
	ev.SetAttr(AttrFirst, st.first.UTC().Format(time.RFC3339Nano))
	return &ev
}

// Run emits settled events until ctx ends, then emits every burst still
// open and returns ctx's error.
func (s *Settler) Run(ctx context.Context) error {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s.mu.Lock()
		var ready []*settling
		wait := time.Hour
		now := s.now()
		for e := s.order.Front(); e != nil; e = s.order.Front() {
			st := e.Value.(*settling)
			if d := st.at.Add(s.quiet).Sub(now); d > 0 {
				wait = d
				break
			}
			ready = append(ready, s.removeLocked(e))
		}
		s.mu.Unlock()
		for _, st := range ready {
			s.emit(st.event())
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			s.mu.Lock()
			s.done = true
			var rest []*settling
			for e := s.order.Front(); e != nil; e = s.order.Front() {
				rest = append(rest, s.removeLocked(e))
			}
			s.mu.Unlock()
			for _, st := range rest {
				s.emit(st.event())
			}
			return ctx.Err()
		case <-s.wake:
		case <-t.C:
		}
	}
}
