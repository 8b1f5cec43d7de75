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
