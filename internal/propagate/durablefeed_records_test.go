package propagate

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
)

// TestReaderRecords: NextRecord and TryNextRecord hand out the durable
// events in their binary form with the journal's seq, in order, and
// count as reads of the Reader like Next does.
func TestReaderRecords(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	m, err := New(Options{Journal: j, Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	r, err := m.Reader(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if _, _, ok, err := r.TryNextRecord(); ok || err != nil {
		t.Fatalf("TryNextRecord on an empty journal = %v, %v; want false, nil", ok, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	subjects := []string{"/a", "/b", "/c"}
	var evs []*event.Event
	for _, s := range subjects {
		evs = append(evs, &event.Event{Type: "fs.write", Subject: s})
	}
	if err := m.PublishBatch(ctx, evs); err != nil {
		t.Fatal(err)
	}
	for i, want := range subjects {
		var seq uint64
		var rec []byte
		if i == 0 {
			seq, rec, err = r.NextRecord(ctx)
		} else {
			var ok bool
			seq, rec, ok, err = r.TryNextRecord()
			if !ok && err == nil {
				t.Fatalf("TryNextRecord %d: none, want %s", i, want)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		var ev event.Event
		if err := ev.UnmarshalBinary(rec); err != nil {
			t.Fatalf("record %d: %v", seq, err)
		}
		if seq != uint64(i+1) || ev.Subject != want {
			t.Errorf("record %d: seq %d subject %q, want seq %d subject %q", i, seq, ev.Subject, i+1, want)
		}
	}
	if got := r.events.Load(); got != 3 {
		t.Errorf("reader counted %d reads, want 3", got)
	}
	if _, _, ok, err := r.TryNextRecord(); ok || err != nil {
		t.Errorf("TryNextRecord past the end = %v, %v; want false, nil", ok, err)
	}
}
