package api

import (
	"container/list"
	"context"
	"strconv"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/propagate"
)

// Settled streams (settle=DURATION on /v1/stream and /v1/ws): a burst of
// events on one subject whose events follow each other within the quiet
// time becomes one event, the last of the burst (the last state), with the
// attributes "count" (how many) and "first" (the time of the first). It is
// sent once the subject has been quiet for the quiet time, like
// Watchman's settle. Events without a subject are never collapsed.
//
// Bursts are sent in the order of their last events, so the ids (seqs) of
// a settled stream increase: a client that resumes with Last-Event-ID gets
// every later burst, and the last state of a subject that was still
// settling when it left (its count then starts again).

// Settle bounds.
const (
	maxSettle     = time.Minute
	maxSettleKeys = 65536 // subjects settling at once; past it the oldest is sent early
)

type burst struct {
	key   string
	last  *event.Event
	count int64
	first time.Time
	at    time.Time // when the last event was read
	since time.Time // when the first event was read

	// For a durable consumer (settler.track): the seqs the burst stands
	// for, and its most delivered event's attempt.
	seqs    []uint64
	attempt int
}

// settler holds the bursts of one settled stream or consumer. It is used
// by one goroutine at a time.
type settler struct {
	quiet time.Duration
	track bool // keep each burst's seqs (a durable consumer acks them)
	byKey map[string]*list.Element
	order list.List // of *burst, by last event
}

func newSettler(quiet time.Duration) *settler {
	return &settler{quiet: quiet, byKey: make(map[string]*list.Element)}
}

// add takes a copy of ev (delivered for the attempt-th time to a durable
// consumer; 0 for a stream) into its subject's burst and returns a burst
// that must be sent at once to stay within maxSettleKeys (nil if none).
func (st *settler) add(ev *event.Event, attempt int, now time.Time) *burst {
	c := copyEvent(ev)
	key := ev.Subject
	if key == "" {
		key = "\x00" + strconv.FormatUint(ev.Seq, 10) // never collapsed
	}
	if e, ok := st.byKey[key]; ok {
		b := e.Value.(*burst)
		b.last, b.at = c, now
		b.count++
		if st.track {
			b.seqs = append(b.seqs, ev.Seq)
			b.attempt = max(b.attempt, attempt)
		}
		st.order.MoveToBack(e)
		return nil
	}
	var early *burst
	if len(st.byKey) >= maxSettleKeys {
		early = st.pop()
	}
	first := ev.Time
	if first.IsZero() {
		first = now
	}
	b := &burst{key: key, last: c, count: 1, first: first, at: now, since: now}
	if st.track {
		b.seqs, b.attempt = []uint64{ev.Seq}, attempt
	}
	st.byKey[key] = st.order.PushBack(b)
	return early
}

// pop removes and returns the oldest burst.
func (st *settler) pop() *burst {
	e := st.order.Front()
	b := st.order.Remove(e).(*burst)
	delete(st.byKey, b.key)
	return b
}

// due removes and returns the bursts quiet since now-quiet, oldest first.
func (st *settler) due(now time.Time) []*burst {
	var out []*burst
	for st.order.Len() > 0 && !st.order.Front().Value.(*burst).at.Add(st.quiet).After(now) {
		out = append(out, st.pop())
	}
	return out
}

// next is when the oldest burst is due (ok false when none settles).
func (st *settler) next() (time.Time, bool) {
	if st.order.Len() == 0 {
		return time.Time{}, false
	}
	return st.order.Front().Value.(*burst).at.Add(st.quiet), true
}

// event is the burst as one event.
func (b *burst) event() *event.Event {
	ev := b.last
	ev.SetAttr("count", strconv.FormatInt(b.count, 10))
	ev.SetAttr("first", b.first.UTC().Format(time.RFC3339Nano))
	return ev
}

// copyEvent copies ev out of the reader's buffers.
func copyEvent(ev *event.Event) *event.Event {
	b, err := ev.AppendBinary(nil)
	c := new(event.Event)
	if err == nil && c.UnmarshalBinary(b) == nil {
		c.Seq = ev.Seq
		return c
	}
	*c = *ev // not expected: the event came from the journal's own encoding
	c.Attrs = append([]event.Attr(nil), ev.Attrs...)
	c.Data = append([]byte(nil), ev.Data...)
	return c
}

// followSettled is followJournal for a settled stream: the events rd
// yields that sel selects go into bursts, and a burst is sent once its
// subject has been quiet for sel.settle.
func (s *Server) followSettled(ctx context.Context, rd *propagate.Reader, sel selection, f follower) {
	if err := f.flush(); err != nil {
		return
	}
	st := newSettler(sel.settle)
	j := s.m.Journal()
	heartbeat := time.NewTicker(s.opts.Heartbeat)
	defer heartbeat.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	send := func(bs ...*burst) bool {
		for _, b := range bs {
			if b != nil && f.send(b.event()) != nil {
				return false
			}
		}
		return true
	}
	var ev event.Event
	for {
		changed := j.Changed()
		for {
			ok, err := rd.TryNext(&ev)
			if err != nil {
				s.log.Error("stream", "err", err)
				f.end("", err)
				return
			}
			if !ok {
				break
			}
			if sel.matcher.Match(&ev) && !send(st.add(&ev, 0, time.Now())) {
				return
			}
		}
		if !send(st.due(time.Now())...) || f.flush() != nil {
			return
		}
		wake := time.Hour
		if at, ok := st.next(); ok {
			wake = max(time.Until(at), 0)
		}
		timer.Reset(wake)
		select {
		case <-changed:
		case <-timer.C:
		case <-heartbeat.C:
			if err := f.heartbeat(); err != nil {
				return
			}
		case <-ctx.Done():
			return // client gone
		case <-s.done:
			// What is still settling is sent as it stands.
			for st.order.Len() > 0 {
				if !send(st.pop()) {
					return
				}
			}
			_ = f.flush()
			f.end("shutdown", nil)
			return
		}
	}
}
