package enrich

import (
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/semprop/semprop/event"
)

// TestGoneInBatch: a write whose file is deleted (or renamed away) later
// in the same batch is flagged gone without a read: what is at the path
// now is a successor (here: recreated with other bytes), whose facts would
// be wrong, or nothing.
func TestGoneInBatch(t *testing.T) {
	root := t.TempDir()
	rec := &recorder{}
	var reads atomic.Int32
	p := newTestPublisher(t, Options{Next: rec, Root: root, readHook: func(string) { reads.Add(1) }})
	f, g := filepath.Join(root, "a"), filepath.Join(root, "b")
	writeFile(t, f, "the successor's bytes")
	publish(t, p,
		&event.Event{Type: event.TypeCreate, Subject: f},
		writeEvent(f),
		&event.Event{Type: event.TypeDelete, Subject: f},
		&event.Event{Type: event.TypeCreate, Subject: f},
		writeEvent(g),
		&event.Event{Type: event.TypeRename, Subject: filepath.Join(root, "c"), Context: event.Context{OldPath: g}},
	)
	evs := rec.take()
	for _, i := range []int{0, 1, 4} {
		if got := attr(evs[i], AttrEnrich); got != flagGone {
			t.Errorf("%s %s: enrich = %q, want gone", evs[i].Type, evs[i].Subject, got)
		}
	}
	if h := attr(evs[3], AttrHash); h == "" {
		t.Errorf("the successor's create has no facts: %v", evs[3].Attrs)
	}
	if n := reads.Load(); n != 2 {
		t.Errorf("%d reads, want 2 (the successor's create, the rename's target)", n)
	}
}
