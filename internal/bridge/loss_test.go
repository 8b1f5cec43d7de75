package bridge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
)

// overflowOp is a kernel boundary's report of a loss.
func overflowOp(root, reason string, n int64) *capture.Op {
	return &capture.Op{Kind: capture.KindOverflow, Boundary: event.BoundaryKernel, Path: root, IsDir: true,
		Time: time.Now(), Reason: reason, Count: n}
}

func attr(ev *event.Event, key string) string {
	for _, a := range ev.Attrs {
		if a.Key == key {
			return a.Value
		}
	}
	return ""
}

// TestOverflowsNeverDeduped: an overflow is never a repeat of another,
// whatever the repeat filter thinks of two ops with the same paths: each
// reports its own loss, with its reason and count.
func TestOverflowsNeverDeduped(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts Options
	}{
		{"kernel-only", Options{}},
		{"bridged", Options{Backing: "/w", Mount: "/m", SelfPID: 100}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			t.Cleanup(func() { goleak.VerifyNone(t) })
			rec := &recorder{}
			mode.opts.Publisher = rec
			b, _, _ := startBridge(t, mode.opts)
			b.Kernel().Emit(overflowOp("/w", capture.ReasonEMFILE, 12))
			b.Kernel().Emit(overflowOp("/w", capture.ReasonQueue, 0))
			b.Kernel().Emit(overflowOp("/w", capture.ReasonQueue, 0))
			evs := rec.waitFor(t, 3, 5*time.Second)
			var got []string
			for _, ev := range evs {
				got = append(got, fmt.Sprintf("%s %s %s", ev.Type, attr(ev, AttrReason), attr(ev, AttrCount)))
			}
			want := []string{"fs.overflow emfile 12", "fs.overflow queue 0", "fs.overflow queue 0"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("published %q, want %q", got, want)
			}
		})
	}
}

// TestPublishLossReported: events the bridge gives up after its retries
// are not lost silently: an fs.overflow with reason "publish", the count
// and the tree they were in is published before the next events.
func TestPublishLossReported(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	rec := &recorder{fail: 3}
	b, _, _ := startBridge(t, Options{Publisher: rec, MaxBatch: 4})
	for _, p := range []string{"/w/d/a", "/w/d/b", "/w/e/c"} {
		b.Kernel().Emit(op(event.BoundaryKernel, capture.KindCreate, p, 7))
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().Lost != 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if st := b.Stats(); st.Lost != 3 {
		t.Fatalf("Stats.Lost = %d, want 3", st.Lost)
	}
	// Still failing: the report is retried with the next batch, and given
	// up with it; the count grows.
	rec.mu.Lock()
	rec.fail = 3
	rec.mu.Unlock()
	b.Kernel().Emit(op(event.BoundaryKernel, capture.KindCreate, "/w/x", 7))
	for b.Stats().Lost != 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if st := b.Stats(); st.Lost != 4 || st.LossReports != 0 {
		t.Fatalf("Stats: lost %d, loss reports %d; want 4, 0", st.Lost, st.LossReports)
	}
	b.Kernel().Emit(op(event.BoundaryKernel, capture.KindCreate, "/w/later", 7))
	evs := rec.waitFor(t, 2, 5*time.Second)
	if len(evs) != 2 {
		t.Fatalf("published %d events, want the loss report and the later event", len(evs))
	}
	ev := evs[0]
	if ev.Type != event.TypeOverflow || attr(ev, AttrReason) != capture.ReasonPublish || attr(ev, AttrCount) != "4" || ev.Subject != "/w" {
		t.Errorf("first event %s %s reason %q count %q; want fs.overflow /w, reason publish, count 4",
			ev.Type, ev.Subject, attr(ev, AttrReason), attr(ev, AttrCount))
	}
	if evs[1].Subject != "/w/later" {
		t.Errorf("second event %s, want /w/later", evs[1].Subject)
	}
	if st := b.Stats(); st.LossReports != 1 {
		t.Errorf("Stats.LossReports = %d, want 1", st.LossReports)
	}
}

// typeChecker is a Publisher that refuses a batch holding an event of no
// known type, as the propagation manager does.
type typeChecker struct{ recorder }

func (p *typeChecker) PublishBatch(ctx context.Context, evs []*event.Event) error {
	for _, ev := range evs {
		if !event.ValidType(ev.Type) {
			return fmt.Errorf("invalid type %q", ev.Type)
		}
	}
	return p.recorder.PublishBatch(ctx, evs)
}

// TestUntranslatableOpReported: an op the bridge cannot translate (no
// kind, an unknown raw code) must not take the events batched with it
// down; it is reported as a loss with reason "invalid".
func TestUntranslatableOpReported(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	p := &typeChecker{}
	b, _, _ := startBridge(t, Options{Publisher: p, BatchDelay: 50 * time.Millisecond})
	b.Kernel().Emit(op(event.BoundaryKernel, capture.KindCreate, "/w/a", 7))
	b.Kernel().Emit(&capture.Op{Boundary: event.BoundaryKernel, Path: "/w/b", Raw: 1 << 62, Time: time.Now()})
	b.Kernel().Emit(op(event.BoundaryKernel, capture.KindCreate, "/w/c", 7))
	evs := p.waitFor(t, 3, 5*time.Second)
	var got []string
	for _, ev := range evs {
		got = append(got, ev.Type+" "+ev.Subject+" "+attr(ev, AttrReason))
	}
	want := []string{"fs.create /w/a ", "fs.overflow /w/b invalid", "fs.create /w/c "}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("published %q, want %q", got, want)
	}
	if st := b.Stats(); st.Lost != 0 || st.Invalid != 1 {
		t.Errorf("Stats: lost %d, invalid %d; want 0, 1", st.Lost, st.Invalid)
	}
}
