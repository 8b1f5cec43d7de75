package propagate

import (
	"context"
	"runtime/debug"
	"syscall"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
)

// minorFaults returns the process's minor page faults so far.
func minorFaults(t *testing.T) int64 {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return ru.Minflt
}

// TestQueueMemoryFaultedAtSubscribe: a subscription's queue is touched
// when it is made, not while events are published: the kernel maps fresh
// memory on the first write to each page, and a page fault on the
// publisher's path (one per 128 queue slots, for every subscriber at
// once) delayed a delivery by tens of microseconds here, the 10-subscriber
// latency's 99th percentile.
func TestQueueMemoryFaultedAtSubscribe(t *testing.T) {
	if raceDetector {
		t.Skip("the race detector's shadow memory takes page faults of its own on the publisher's path")
	}
	e := newEnv(t, journal.FsyncNever)
	// Memory the heap holds from earlier tests may have been touched
	// already: give it back, so that the queues get fresh pages.
	debug.FreeOSMemory()
	const subs, n = 4, 4096
	var ss []*Subscription
	for range subs {
		s, err := e.m.Subscribe(SubscribeOptions{Queue: 1 << 16, Policy: PolicyBlock, BlockTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
	}
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = &event.Event{ID: event.NewID(), Type: "a.b", HLC: e.m.Clock().Now(), Source: "s", Time: time.Now()}
	}
	ctx := context.Background()
	// Warm the path (journal buffers, routing cache) before counting.
	if err := e.m.PublishBatch(ctx, evs[:16]); err != nil {
		t.Fatal(err)
	}
	before := minorFaults(t)
	for i := 16; i < n; i += 80 {
		if err := e.m.PublishBatch(ctx, evs[i:min(i+80, n)]); err != nil {
			t.Fatal(err)
		}
	}
	faults := minorFaults(t) - before
	// Each subscriber's queue spans (n*32)/4096 = 32 fresh pages when it
	// is not touched in advance: 128 faults in all.
	if faults > 40 {
		t.Errorf("%d minor page faults while publishing %d events to %d subscribers, want few (queues touched at Subscribe)", faults, n, subs)
	}
	for _, s := range ss {
		if got := s.Stats().Depth; got != n {
			t.Fatalf("subscriber has %d queued, want %d", got, n)
		}
	}
}
