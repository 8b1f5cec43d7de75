package propagate

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
)

// TestPublishBatchLarge: a batch larger than the deliver-first limit
// (encoded first, routed with one lookup per type) is durable and
// readable from the journal when PublishBatch returns, and every
// subscriber gets all of it once, in seq order, while other publishers
// publish at the same time.
func TestPublishBatchLarge(t *testing.T) {
	for _, fsync := range []journal.FsyncPolicy{journal.FsyncNever, journal.FsyncAlways} {
		t.Run(fsync.String(), func(t *testing.T) {
			e := newEnv(t, fsync)
			subs := make([]*Subscription, 3)
			for i := range subs {
				s, err := e.m.Subscribe(SubscribeOptions{Queue: 1 << 12, Policy: PolicyBlock, BlockTimeout: time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				subs[i] = s
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			const publishers, batches, size = 3, 10, 100
			errs := make(chan error, publishers)
			for range publishers {
				go func() {
					for range batches {
						evs := make([]*event.Event, size)
						for i := range evs {
							evs[i] = &event.Event{Type: "a.b", Subject: "/x"}
						}
						if err := e.m.PublishBatch(ctx, evs); err != nil {
							errs <- err
							return
						}
						last := evs[size-1].Seq
						if d := e.j.DurableSeq(); d < last {
							errs <- errors.New("PublishBatch returned before its events were durable")
							return
						}
						for i, ev := range evs {
							if ev.Seq != evs[0].Seq+uint64(i) {
								errs <- errors.New("a batch's seqs are not consecutive")
								return
							}
						}
					}
					errs <- nil
				}()
			}
			for range publishers {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			total := uint64(publishers * batches * size)
			buf := make([]*event.Event, 512)
			for i, s := range subs {
				var next uint64 = 1
				for next <= total {
					n, err := s.NextBatch(ctx, buf)
					if err != nil {
						t.Fatalf("subscriber %d after seq %d: %v", i, next-1, err)
					}
					for _, ev := range buf[:n] {
						if ev.Seq != next {
							t.Fatalf("subscriber %d got seq %d, want %d", i, ev.Seq, next)
						}
						next++
					}
				}
			}
			r, err := e.j.Reader(1)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var n uint64
			for {
				seq, _, ok, err := r.TryNext()
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					break
				}
				if n++; seq != n {
					t.Fatalf("journal record %d has seq %d", n, seq)
				}
			}
			if n != total {
				t.Errorf("journal holds %d records, want %d", n, total)
			}
		})
	}
}

// TestPublishBatchInvalidTypeLater: a batch whose later event has an
// invalid type (after events of a valid one) is refused whole.
func TestPublishBatchInvalidTypeLater(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	evs := []*event.Event{{Type: "a.b"}, {Type: "a.b"}, {Type: "a..b"}, {Type: "a.b"}}
	if err := e.m.PublishBatch(context.Background(), evs); !errors.Is(err, ErrInvalidType) {
		t.Fatalf("PublishBatch with an invalid third type = %v, want ErrInvalidType", err)
	}
	if s := e.j.LastSeq(); s != 0 {
		t.Errorf("LastSeq = %d after a refused batch, want 0", s)
	}
}

// TestPublishBatchIDs: a batch's events without an id get new ones that
// increase in the batch's order (made a chunk at a time, more than one
// chunk here), carry their HLC's millisecond and are distinct; an id the
// publisher set is kept, and an event with its own HLC gets an id of that
// HLC's millisecond.
func TestPublishBatchIDs(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	own := event.NewID()
	ownHLC := event.HLC{Wall: time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()}
	evs := make([]*event.Event, 150)
	for i := range evs {
		evs[i] = &event.Event{Type: "a.b", Subject: "/x"}
	}
	evs[10].ID = own
	evs[149].HLC = ownHLC // last: an id of another millisecond restarts the random part
	if err := e.m.PublishBatch(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	if evs[10].ID != own {
		t.Errorf("event 10: id %s, want the publisher's %s", evs[10].ID, own)
	}
	if got := evs[149].ID.Time(); !got.Equal(time.Unix(0, ownHLC.Wall)) {
		t.Errorf("event 149: id time %v, want its HLC's %v", got, time.Unix(0, ownHLC.Wall).UTC())
	}
	seen := make(map[event.ID]bool)
	var prev event.ID
	for i, ev := range evs {
		if ev.ID.IsZero() || seen[ev.ID] {
			t.Fatalf("event %d: id %s zero or repeated", i, ev.ID)
		}
		seen[ev.ID] = true
		if i == 10 || i == 149 {
			continue
		}
		if ev.ID.String() <= prev.String() {
			t.Fatalf("event %d: id %s after %s", i, ev.ID, prev)
		}
		if got, want := ev.ID.Time().UnixMilli(), ev.HLC.Wall/1e6; got != want {
			t.Fatalf("event %d: id millisecond %d, HLC's %d", i, got, want)
		}
		prev = ev.ID
	}
}

// TestPublishBatchFillsParkedQueue: a batch larger than a PolicyBlock
// subscriber's queue, published while the subscriber is parked, reaches it
// whole: the publisher that finds the queue full wakes the subscriber
// before it waits for space, instead of waiting out BlockTimeout for every
// event that does not fit while the subscriber sleeps.
func TestPublishBatchFillsParkedQueue(t *testing.T) {
	for _, size := range []int{10, 100} { // delivered before and after encoding
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			e := newEnv(t, journal.FsyncNever)
			s, err := e.m.Subscribe(SubscribeOptions{Queue: 4, Policy: PolicyBlock, BlockTimeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			got := make(chan uint64, size)
			done := make(chan struct{})
			go func() {
				defer close(done)
				buf := make([]*event.Event, 3)
				for {
					n, err := s.NextBatch(ctx, buf)
					if err != nil {
						return
					}
					for _, ev := range buf[:n] {
						got <- ev.Seq
					}
				}
			}()
			waitParked(t, s)
			evs := make([]*event.Event, size)
			for i := range evs {
				evs[i] = &event.Event{Type: "a.b", Subject: "/x"}
			}
			start := time.Now()
			if err := e.m.PublishBatch(ctx, evs); err != nil {
				t.Fatal(err)
			}
			for i := range size {
				var seq uint64
				select {
				case seq = <-got:
				case <-time.After(10 * time.Second):
					t.Fatalf("%d of %d events delivered; %d dropped", i, size, s.Stats().Dropped)
				}
				if seq != evs[i].Seq {
					t.Fatalf("delivery %d: seq %d, want %d", i, seq, evs[i].Seq)
				}
			}
			if d := s.Stats().Dropped; d != 0 {
				t.Fatalf("%d events dropped", d)
			}
			// Not a performance bound: waiting out BlockTimeout once per
			// event that did not fit takes seconds.
			if el := time.Since(start); el > 5*time.Second {
				t.Fatalf("the batch took %v", el)
			}
			s.Close()
			<-done
		})
	}
}

// waitParked waits until s's consumer has parked on its empty queue.
func waitParked(t *testing.T, s *Subscription) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.q.parked.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the subscriber did not park")
		}
		time.Sleep(time.Millisecond)
	}
}
