package propagate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
)

// TestRingConcurrent: one producer and one consumer race on a small ring
// under every dropping policy, the producer pushing events one by one or
// staging runs of them (stage, publish), the consumer popping one by one
// or in batches. The consumer sees events in order, never one twice, and
// taken + dropped accounts for every push.
func TestRingConcurrent(t *testing.T) {
	const n = 200_000
	for _, policy := range []Policy{PolicyDropOldest, PolicyDropNewest, PolicyBlock} {
		for _, staged := range []bool{false, true} {
			for _, batch := range []int{1, 5} {
				t.Run(fmt.Sprintf("%s/staged=%v/pop=%d", policy, staged, batch), func(t *testing.T) {
					testRingConcurrent(t, n, policy, staged, batch)
				})
			}
		}
	}
}

func testRingConcurrent(t *testing.T, n int, policy Policy, staged bool, batch int) {
	r := newRing(8, policy)
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i].Seq = uint64(i + 1)
	}
	closed := make(chan struct{})
	var (
		wg    sync.WaitGroup
		taken int
		last  uint64
		bad   error
	)
	wg.Go(func() {
		buf := make([]*event.Event, batch)
		for {
			k := 0
			if batch == 1 {
				if ev, _, ok := r.pop(); ok {
					buf[0], k = ev, 1
				}
			} else {
				k, _ = r.popBatch(buf)
			}
			if k == 0 {
				if err := r.wait(context.Background(), closed); errors.Is(err, ErrClosed) {
					return
				}
				continue
			}
			for _, ev := range buf[:k] {
				if ev.Seq <= last && bad == nil {
					bad = errors.New("out of order or repeated")
					t.Errorf("took seq %d after %d", ev.Seq, last)
				}
				last = ev.Seq
				taken++
			}
		}
	})
	lost := 0
	run := 1
	for i := 0; i < len(evs); i += run {
		run = 1
		if staged {
			run = min(1+i%13, len(evs)-i) // runs of 1 to 13 events, some longer than the ring
		}
		var res pushResult
		for k := i; k < i+run; k++ {
			var rk pushResult
			if staged {
				rk = r.stage(&evs[k], 0, policy, time.Second)
			} else {
				rk = r.push(&evs[k], 0, policy, time.Second)
			}
			if rk&(pushedDropped|dropped) != 0 {
				lost++
			}
			res |= rk
		}
		if staged {
			res |= r.publish()
		}
		if res&pushedWake != 0 {
			r.signal()
		}
	}
	close(closed)
	wg.Wait()
	if taken+lost != n {
		t.Errorf("taken %d + dropped %d = %d, want %d", taken, lost, taken+lost, n)
	}
	if policy == PolicyBlock && lost != 0 {
		t.Errorf("block policy dropped %d with a live consumer", lost)
	}
	if last != uint64(n) && policy != PolicyDropNewest {
		t.Errorf("last taken seq %d, want %d (the newest survives this policy)", last, n)
	}
	t.Logf("taken %d, dropped %d", taken, lost)
}

// TestPublishTooLarge: an event too large for a journal record is refused
// before any subscriber sees it, and the journal stays usable.
func TestPublishTooLarge(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	sub, _ := e.m.Subscribe(SubscribeOptions{})
	big := &event.Event{Type: "app.big", Data: make([]byte, journal.MaxRecordSize)}
	if _, err := e.m.Publish(context.Background(), big); !errors.Is(err, journal.ErrRecordTooLarge) {
		t.Fatalf("Publish of a %d-byte event = %v, want ErrRecordTooLarge", len(big.Data), err)
	}
	if ev, ok := sub.TryNext(); ok {
		t.Fatalf("subscriber got seq %d of a refused event", ev.Seq)
	}
	seq, err := e.m.Publish(context.Background(), &event.Event{Type: "app.small"})
	if err != nil || seq != 1 {
		t.Fatalf("Publish after the refusal = %d, %v; want seq 1", seq, err)
	}
	if ev, ok := sub.TryNext(); !ok || ev.Seq != 1 {
		t.Fatalf("subscriber after the refusal: %v %v, want seq 1", ev, ok)
	}
}
