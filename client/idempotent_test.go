package client_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// A client that retries a publish (same ids) gets the original seqs back
// and the daemon stores the events once.
func TestPublishRetryIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	j, err := journal.Open(journal.Options{Dir: dir + "/journal", Fsync: journal.FsyncNever, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Logger: quiet,
		Dedup: propagate.DedupOptions{Window: propagate.DefaultDedupWindow}})
	if err != nil {
		t.Fatal(err)
	}
	s := api.New(api.Options{Manager: m, Logger: quiet})
	s.SetReady(true, "")
	hs := httptest.NewServer(s)
	t.Cleanup(func() { s.Close(); hs.Close(); m.Close(); j.Close() })

	c := client.New(hs.URL, "").WithSource("app://retry")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs := []*event.Event{
		{ID: event.NewID(), Type: "app.order", Subject: "/o/1"},
		{SourceID: "3f1e6a52-order-2", Type: "app.order", Subject: "/o/2"},
	}
	first, err := c.PublishBatch(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.PublishBatch(ctx, evs) // the retry after a lost answer
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(first, again) {
		t.Errorf("retried batch got seqs %v, want the first answer's %v", again, first)
	}
	one, err := c.Publish(ctx, evs[1])
	if err != nil {
		t.Fatal(err)
	}
	if one != first[1] {
		t.Errorf("Publish of a stored event = seq %d, want %d", one, first[1])
	}
	if last := j.LastSeq(); last != 2 {
		t.Errorf("journal holds %d events, want 2", last)
	}
}

// A batch's events without an id are sent with new ids that increase in
// the batch's order (made a chunk at a time: more than one chunk here) and
// are distinct; ids and source ids the caller set are sent as they are,
// and the caller's events are left unchanged.
func TestPublishBatchNewIDs(t *testing.T) {
	hs, m := newGroupServer(t)
	c := client.New(hs.URL, "").WithSource("app://ids")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	own := event.NewID()
	evs := make([]*event.Event, 150)
	for i := range evs {
		evs[i] = &event.Event{Type: "app.order", Subject: "/o"}
	}
	evs[5].ID = own
	evs[100].SourceID = "order-100"
	seqs, err := c.PublishBatch(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range evs {
		if (i == 5) != !ev.ID.IsZero() {
			t.Fatalf("the caller's event %d changed: id %s", i, ev.ID)
		}
	}
	rd, err := m.Reader(seqs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	seen := make(map[event.ID]bool)
	var prev event.ID
	for i := range evs {
		var got event.Event
		if err := rd.Next(ctx, &got); err != nil {
			t.Fatal(err)
		}
		switch {
		case i == 5:
			if got.ID != own {
				t.Errorf("event 5: id %s, want the caller's %s", got.ID, own)
			}
			continue
		case i == 100:
			if got.SourceID != "order-100" {
				t.Errorf("event 100: source id %q, want order-100", got.SourceID)
			}
			continue
		}
		if got.ID.IsZero() || seen[got.ID] {
			t.Fatalf("event %d: id %s zero or repeated", i, got.ID)
		}
		seen[got.ID] = true
		if got.ID.String() <= prev.String() {
			t.Fatalf("event %d: id %s after %s", i, got.ID, prev)
		}
		prev = got.ID
	}
}
