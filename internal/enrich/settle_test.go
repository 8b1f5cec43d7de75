package enrich

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

// TestSettleBurst: a 1,000-write burst on one path is one event with
// count 1000, the last state and the first time; another path settles on
// its own.
func TestSettleBurst(t *testing.T) {
	var mu sync.Mutex
	var got []*event.Event
	s := NewSettler(100*time.Millisecond, 0, func(ev *event.Event) {
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	start := time.Now()
	for i := range 1000 {
		ev := &event.Event{Type: event.TypeWrite, Subject: "/t/busy"}
		if i == 999 {
			ev.Type = event.TypeDelete
		}
		s.Add(ev)
	}
	s.Add(&event.Event{Type: event.TypeCreate, Subject: "/t/other"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(150 * time.Millisecond) // nothing more may come
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("%d events, want 2", len(got))
	}
	ev := got[0]
	if ev.Subject != "/t/busy" || ev.Type != event.TypeDelete || attr(ev, AttrCount) != "1000" {
		t.Errorf("settled %s %s count=%s, want fs.delete /t/busy count=1000", ev.Type, ev.Subject, attr(ev, AttrCount))
	}
	first, err := time.Parse(time.RFC3339Nano, attr(ev, AttrFirst))
	if err != nil || first.Before(start.Add(-time.Second)) || first.After(time.Now()) {
		t.Errorf("first = %q (%v), want the burst's start", attr(ev, AttrFirst), err)
	}
	if attr(got[1], AttrCount) != "1" {
		t.Errorf("other path: count = %q, want 1", attr(got[1], AttrCount))
	}
}

// TestSettleFlushOnStop: open bursts are emitted when Run ends.
func TestSettleFlushOnStop(t *testing.T) {
	var got []*event.Event
	s := NewSettler(time.Hour, 0, func(ev *event.Event) { got = append(got, ev) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	s.Add(&event.Event{Subject: "/a"})
	s.Add(&event.Event{Subject: "/a"})
	cancel()
	<-done
	if len(got) != 1 || attr(got[0], AttrCount) != "2" {
		t.Fatalf("flushed %d events, want 1 with count 2", len(got))
	}
}
