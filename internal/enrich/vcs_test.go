package enrich

import (
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

// TestVCSLockStartsOperation checks that any lock file git creates under
// .git/ starts an operation (CI saw the maintenance a commit runs in the
// background publish objects/maintenance.lock), and that other files
// under .git/ pass when no operation is in progress.
func TestVCSLockStartsOperation(t *testing.T) {
	tr := newVCSTracker(VCSSummarise, 100*time.Millisecond)
	now := time.Unix(1000, 0)
	ev := func(typ, p string) *event.Event {
		return &event.Event{Type: typ, Subject: p, Time: now}
	}
	if tr.hold(ev(event.TypeWrite, "/r/.git/objects/ab/cd"), now) {
		t.Error("a write under .git/ outside an operation was held")
	}
	for _, e := range []*event.Event{
		ev(event.TypeCreate, "/r/.git/objects/maintenance.lock"),
		ev(event.TypeDelete, "/r/.git/objects/maintenance.lock"),
		ev(event.TypeCreate, "/r/.git/refs/heads/main.lock"),
	} {
		if !tr.hold(e, now) {
			t.Errorf("%s %s: not held", e.Type, e.Subject)
		}
	}
	_, n := tr.finish(now.Add(50*time.Millisecond), nil, false)
	if n != 0 {
		t.Fatalf("ended %d operations before the quiet time", n)
	}
	sums, n := tr.finish(now.Add(200*time.Millisecond), nil, false)
	if n != 1 || len(sums) != 1 {
		t.Fatalf("ended %d, %d summaries; want 1", n, len(sums))
	}
	if s := sums[0]; s.Subject != "/r" || attr(s, AttrCount) != "3" || attr(s, AttrRefs) != "refs/heads/main" {
		t.Errorf("summary %s count %s refs %s", s.Subject, attr(s, AttrCount), attr(s, AttrRefs))
	}
}
