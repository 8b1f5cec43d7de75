package propagate

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
)

// TestGroupChurnLosesNothing: while publishers run, members keep joining
// and leaving (handing back some events they took); one member stays.
// Every event is passed on by exactly one member.
func TestGroupChurnLosesNothing(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	const total = 20000
	var mu sync.Mutex
	passed := make(map[uint64]int, total)
	pass := func(evs ...*event.Event) {
		mu.Lock()
		for _, ev := range evs {
			passed[ev.Seq]++
		}
		mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stable, err := e.m.Subscribe(SubscribeOptions{Group: "g", Queue: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; ; round++ {
				select {
				case <-stop:
					return
				default:
				}
				s, err := e.m.Subscribe(SubscribeOptions{Group: "g", Queue: 1 << 16})
				if err != nil {
					t.Error(err)
					return
				}
				var took []*event.Event
				for range 50 + 37*w + round%13 {
					ev, ok := s.TryNext()
					if !ok {
						time.Sleep(50 * time.Microsecond)
						continue
					}
					took = append(took, ev)
				}
				// Pass on the first half; hand the rest back.
				half := len(took) / 2
				pass(took[:half]...)
				s.Leave(took[half:])
			}
		}()
	}
	var pubs sync.WaitGroup
	for range 2 {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for range total / 2 / 10 {
				evs := make([]*event.Event, 10)
				for i := range evs {
					evs[i] = &event.Event{Type: "job.run"}
				}
				if err := e.m.PublishBatch(ctx, evs); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	// The stable member passes on everything it gets.
	got := make(chan struct{})
	go func() {
		defer close(got)
		for {
			mu.Lock()
			n := len(passed)
			mu.Unlock()
			if n >= total || ctx.Err() != nil {
				return
			}
			ev, err := stable.Next(ctx)
			if err != nil {
				return
			}
			pass(ev)
		}
	}()
	pubs.Wait()
	close(stop)
	wg.Wait()
	<-got
	stable.Close()
	if len(passed) != total {
		t.Errorf("%d events passed on, want %d", len(passed), total)
	}
	for s, n := range passed {
		if n != 1 {
			t.Errorf("seq %d passed on %d times", s, n)
		}
	}
	if st := e.m.router.Stats(); st.Undelivered != 0 {
		t.Errorf("%d events undelivered", st.Undelivered)
	}
}

// TestGroupLeaveTime: from a member's departure to its events routed to
// the others takes well under a millisecond.
func TestGroupLeaveTime(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	joinN(t, e.m, "g", 2, SubscribeOptions{Queue: 1 << 16})
	ev := &event.Event{Type: "job.run", Subject: "/f"}
	best := time.Hour
	for range 20 {
		s, err := e.m.Subscribe(SubscribeOptions{Group: "g", Queue: 64})
		if err != nil {
			t.Fatal(err)
		}
		for range 16 {
			offer(s, ev, 0)
		}
		start := time.Now()
		if n := s.Leave(nil); n != 16 {
			t.Fatalf("Leave rerouted %d, want 16", n)
		}
		best = min(best, time.Since(start))
	}
	if best > time.Millisecond {
		t.Errorf("failover took %v at best, want <= 1ms", best)
	}
}
