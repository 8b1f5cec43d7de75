package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

func newGroupServer(t *testing.T) (*httptest.Server, *propagate.Manager) {
	t.Helper()
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	j, err := journal.Open(journal.Options{Dir: dir + "/journal", Fsync: journal.FsyncInterval, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s := api.New(api.Options{Manager: m, Logger: quiet})
	s.SetReady(true, "")
	hs := httptest.NewServer(s)
	t.Cleanup(func() { s.Close(); hs.Close(); m.Close(); j.Close() })
	return hs, m
}

// TestStreamUnreachableReturnsDialError: against a server that is not
// there, Stream gives up after its retries with the dial error, not
// with the context's deadline.
func TestStreamUnreachableReturnsDialError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var attempts []int
	c := client.New("http://"+addr, "").WithRetries(2).WithOnReconnect(func(_ error, n int) { attempts = append(attempts, n) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = c.Stream(ctx, client.Selector{}, 0, func(*event.Event) error { return nil })
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Stream to a closed port = %v, want the dial error (connection refused)", err)
	}
	if len(attempts) != 2 {
		t.Errorf("reconnect hook called %v, want attempts 1 and 2", attempts)
	}
}

// TestStreamGroupSharesEvents: two members of a group over the Go client
// share the events, each once.
func TestStreamGroupSharesEvents(t *testing.T) {
	hs, m := newGroupServer(t)
	c := client.New(hs.URL, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	got := map[uint64]int{}
	per := [2]int{}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.StreamGroup(ctx, client.Selector{Type: "job.*"}, client.Member{Group: "g"}, func(ev *event.Event) error {
				mu.Lock()
				got[ev.Seq]++
				per[i]++
				mu.Unlock()
				return nil
			})
		}()
	}
	for {
		n := 0
		for _, ri := range m.Routes() {
			if ri.Name == "g" {
				n = len(ri.Members)
			}
		}
		if n == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	evs := make([]*event.Event, 100)
	for i := range evs {
		evs[i] = &event.Event{Type: "job.run"}
	}
	if err := m.PublishBatch(ctx, evs); err != nil {
		t.Fatal(err)
	}
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 100 || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	wg.Wait()
	for s, n := range got {
		if n != 1 {
			t.Errorf("seq %d delivered %d times", s, n)
		}
	}
	if len(got) != 100 || per[0] != 50 || per[1] != 50 {
		t.Errorf("got %d events, %v per member; want 100, 50 each", len(got), per)
	}
}
