package api

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
)

// TestSoakSSE: 50 concurrent SSE clients follow a publisher of 100,000
// events; every client sees every seq exactly once, in order — including
// the clients that disconnect halfway and resume. Bounded to 2 minutes.
// Under the race detector (about ten times slower) it runs 20,000 events;
// the full size runs without it: go test -run TestSoakSSE ./internal/api.
func TestSoakSSE(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test; skipped with -short")
	}
	const clients, batch = 50, 1000
	total := uint64(100_000)
	if raceEnabled {
		total = 20_000
	}
	ts := newTestServer(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	errc := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			c := client.New(ts.URL, "")
			var last uint64
			check := func(ev *event.Event) error {
				if ev.Seq != last+1 {
					return fmt.Errorf("client %d: seq %d after %d (gap or duplicate)", i, ev.Seq, last)
				}
				last = ev.Seq
				return nil
			}
			stop := errors.New("stop")
			if i%5 == 0 { // every fifth client drops out halfway and resumes
				err := c.Stream(ctx, client.Selector{}, 0, func(ev *event.Event) error {
					if err := check(ev); err != nil {
						return err
					}
					if last == total/2 {
						return stop
					}
					return nil
				})
				if err != stop {
					errc <- fmt.Errorf("client %d first half: %v", i, err)
					return
				}
			}
			err := c.Stream(ctx, client.Selector{}, last, func(ev *event.Event) error {
				if err := check(ev); err != nil {
					return err
				}
				if last == total {
					return stop
				}
				return nil
			})
			if err != stop {
				errc <- fmt.Errorf("client %d: ended at seq %d: %v", i, last, err)
			}
		})
	}
	pub := client.New(ts.URL, "")
	evs := make([]*event.Event, batch)
	for sent := uint64(0); sent < total; sent += batch {
		for j := range evs {
			evs[j] = &event.Event{Type: "soak.tick", Subject: "/s"}
		}
		if _, err := pub.PublishBatch(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}
