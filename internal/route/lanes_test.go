package route

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/semprop/semprop/event"
)

func TestLanesOrder(t *testing.T) {
	q := NewLanes[string](16)
	for _, p := range []struct {
		prio event.Priority
		v    string
	}{
		{event.PriorityBulk, "b1"}, {event.PriorityNormal, "n1"}, {event.PriorityCritical, "c1"},
		{event.PriorityBulk, "b2"}, {event.PriorityHigh, "h1"}, {event.PriorityCritical, "c2"}, {event.PriorityNormal, "n2"},
	} {
		if !q.Push(p.prio, p.v) {
			t.Fatalf("Push(%v, %s) = false", p.prio, p.v)
		}
	}
	got := q.PopBatch(nil, 100)
	want := []string{"c1", "c2", "h1", "n1", "n2", "b1", "b2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pop order (-want +got):\n%s", diff)
	}
}

func TestLanesShedding(t *testing.T) {
	q := NewLanes[int](3)
	q.Push(event.PriorityBulk, 1)
	q.Push(event.PriorityNormal, 2)
	q.Push(event.PriorityBulk, 3)
	if q.Push(event.PriorityBulk, 4) {
		t.Errorf("Push(bulk) into a queue full of bulk and normal = true, want false")
	}
	if !q.Push(event.PriorityCritical, 5) { // evicts bulk 1
		t.Fatalf("Push(critical) into a full queue = false, want true")
	}
	if !q.Push(event.PriorityHigh, 6) { // evicts bulk 3
		t.Fatalf("Push(high) = false, want true")
	}
	if !q.Push(event.PriorityHigh, 7) { // evicts normal 2
		t.Fatalf("Push(high) = false, want true")
	}
	if q.Push(event.PriorityNormal, 8) {
		t.Errorf("Push(normal) into a queue of high and critical = true, want false")
	}
	got := q.PopBatch(nil, 10)
	if diff := cmp.Diff([]int{5, 6, 7}, got); diff != "" {
		t.Errorf("queued (-want +got):\n%s", diff)
	}
	st := q.Stats()
	want := [4]LaneStats{
		{Pushed: 2, Shed: 2, Rejected: 1},
		{Pushed: 1, Shed: 1, Rejected: 1},
		{Pushed: 2},
		{Pushed: 1},
	}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestLanesCloseAndContext(t *testing.T) {
	q := NewLanes[int](4)
	q.Push(event.PriorityNormal, 1)
	q.Close()
	if q.Push(event.PriorityCritical, 2) {
		t.Errorf("Push after Close = true, want false")
	}
	ctx := context.Background()
	if v, err := q.Pop(ctx); err != nil || v != 1 {
		t.Errorf("Pop = %v, %v; want 1, nil (drain after close)", v, err)
	}
	if _, err := q.Pop(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Pop on closed empty queue error = %v, want ErrClosed", err)
	}
	q2 := NewLanes[int](4)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := q2.Pop(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Pop on empty queue error = %v, want DeadlineExceeded", err)
	}
}

// TestLanesBulkSaturated floods the bulk lane while a slow consumer drains
// the queue, and checks that critical events still get through at once.
func TestLanesBulkSaturated(t *testing.T) {
	const capacity, critical = 256, 100
	q := NewLanes[item](capacity)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var stop atomic.Bool
	var bulkPushed atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() { // bulk flood: the lane stays full
		for i := 0; !stop.Load() && i < 50_000_000; i++ {
			q.Push(event.PriorityBulk, item{prio: event.PriorityBulk, at: time.Now()})
			bulkPushed.Add(1)
			if i%64 == 0 {
				time.Sleep(10 * time.Microsecond)
			}
		}
	})
	var critLat, bulkLat []time.Duration
	var bulkPopped int64
	var pops atomic.Int64 // bulk items the consumer has taken
	// pushedAt[i] is pops right after critical event i was pushed; poppedAt[i]
	// is pops when the consumer took it. Each is written by one goroutine
	// and read after both are done.
	var pushedAt, poppedAt [critical]int64
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for len(critLat) < critical {
			it, err := q.Pop(ctx)
			if err != nil {
				return
			}
			lat := time.Since(it.at)
			if it.prio == event.PriorityCritical {
				critLat = append(critLat, lat)
				poppedAt[it.id] = pops.Load()
			} else {
				bulkLat = append(bulkLat, lat)
				bulkPopped++
			}
			if it.prio != event.PriorityCritical {
				pops.Add(1)
			}
			spin(20 * time.Microsecond) // a slow consumer
		}
	}()
	time.Sleep(20 * time.Millisecond) // let the flood fill the queue
	for i := range critical {
		if !q.Push(event.PriorityCritical, item{prio: event.PriorityCritical, at: time.Now(), id: i}) {
			t.Errorf("critical event refused")
		}
		pushedAt[i] = pops.Load()
		time.Sleep(time.Millisecond)
	}
	select {
	case <-consumed:
	case <-ctx.Done():
		t.Fatalf("consumer did not receive %d critical events", critical)
	}
	stop.Store(true)
	wg.Wait()
	maxAhead := int64(0) // most bulk items taken between a critical push and its pop
	for i := range critical {
		maxAhead = max(maxAhead, poppedAt[i]-pushedAt[i])
	}

	st := q.Stats()
	if st[3].Shed != 0 || st[3].Rejected != 0 || len(critLat) != critical {
		t.Errorf("critical lane %+v, %d delivered; want all %d delivered, none shed", st[3], len(critLat), critical)
	}
	if st[0].Shed+st[0].Rejected == 0 {
		t.Errorf("bulk lane %+v: want shedding under overload", st[0])
	}
	// Every bulk push is accounted for: popped, shed, rejected or queued.
	if got := bulkPopped + int64(st[0].Shed+st[0].Rejected) + int64(st[0].Queued); got != bulkPushed.Load() {
		t.Errorf("bulk accounting: popped+shed+rejected+queued = %d, pushed %d", got, bulkPushed.Load())
	}
	slices.Sort(critLat)
	slices.Sort(bulkLat)
	p50c, p90c := critLat[len(critLat)/2], critLat[len(critLat)*9/10]
	p50b := bulkLat[len(bulkLat)/2]
	t.Logf("critical latency p50 %v p90 %v max %v (at most %d bulk items ahead); bulk p50 %v; bulk lane %+v",
		p50c, p90c, critLat[len(critLat)-1], maxAhead, p50b, st[0])
	// A critical event waits for at most the bulk item in progress (and one
	// the consumer may be taking as it is pushed), never for the bulk
	// backlog: counted in items, this does not depend on scheduling noise.
	if maxAhead > 2 {
		t.Errorf("a critical event waited behind %d bulk items, want <= 2", maxAhead)
	}
	// In time, the bound is loose: the machine is shared.
	if p50c > p50b {
		t.Errorf("critical p50 latency %v above bulk p50 %v", p50c, p50b)
	}
}

type item struct {
	prio event.Priority
	at   time.Time
	id   int
}

func spin(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
	}
}
