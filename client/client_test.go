package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
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
	hs := httptest.NewServer(s)
	defer func() { s.Close(); hs.Close(); m.Close(); j.Close() }()

	c := client.New(hs.URL, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const total = 3000
	go func() {
		for i := 0; i < total; i += 100 {
			evs := make([]*event.Event, 100)
			for k := range evs {
				evs[k] = &event.Event{Type: "t.x"}
			}
			if _, err := c.PublishBatch(ctx, evs); err != nil {
				t.Error(err)
				return
			}
			if i%500 == 0 {
				hs.CloseClientConnections() // drop every stream now and then
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
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
		return nil
	})
	if err != done {
		t.Fatalf("Stream = %v at seq %d, want all %d events", err, last, total)
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
