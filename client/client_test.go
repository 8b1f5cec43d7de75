package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

func TestStreamResumesAfterDisconnects(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	j, _ := journal.Open(journal.Options{Dir: dir + "/journal", Fsync: journal.FsyncInterval, Logger: quiet})
	m, _ := propagate.New(propagate.Options{Journal: j, Dir: dir, Logger: quiet})
	s := api.New(api.Options{Manager: m, Logger: quiet})
	s.SetReady(true, "")
	var streams atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/stream" {
			streams.Add(1)
		}
		s.ServeHTTP(w, r)
	}))
	defer func() { s.Close(); hs.Close(); m.Close(); j.Close() }()

	c := client.New(hs.URL, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const total, batch = 3000, 100
	// The publisher must not reuse a connection the test just cut.
	pub := client.NewWithHTTPClient(hs.URL, "", &http.Client{Transport: &http.Transport{DisableKeepAlives: true}})
	publish := func() {
		evs := make([]*event.Event, batch)
		for k := range evs {
			evs[k] = &event.Event{Type: "t.x"}
		}
		if _, err := pub.PublishBatch(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	publish()
	var last uint64
	done := errors.New("done")
	err := c.Stream(ctx, client.Selector{}, 0, func(ev *event.Event) error {
		if ev.Seq != last+1 {
			t.Fatalf("seq %d after %d: gap or duplicate across reconnects", ev.Seq, last)
		}
		last = ev.Seq
		if last == total {
			return done
		}
		if last%batch == 0 { // caught up with what exists
			if last%(3*batch) == 0 {
				hs.CloseClientConnections() // cut the stream before more exists
			}
			publish()
		}
		return nil
	})
	if err != done {
		t.Fatalf("Stream = %v at seq %d, want all %d events", err, last, total)
	}
	if n := streams.Load(); n < 3 {
		t.Fatalf("only %d stream connections: the test did not exercise reconnection", n)
	}
}

func TestErrorsCarryStatusAndField(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	j, _ := journal.Open(journal.Options{Dir: dir + "/journal", Logger: quiet})
	m, _ := propagate.New(propagate.Options{Journal: j, Dir: dir, Logger: quiet})
	s := api.New(api.Options{Manager: m, Logger: quiet})
	s.SetReady(true, "")
	hs := httptest.NewServer(s)
	defer func() { s.Close(); hs.Close(); m.Close(); j.Close() }()
	_, err := client.New(hs.URL, "").Publish(context.Background(), &event.Event{Type: "Not Valid"})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 400 || ce.Field != "type" {
		t.Fatalf("Publish(bad type) = %v, want a 400 naming type", err)
	}
}
