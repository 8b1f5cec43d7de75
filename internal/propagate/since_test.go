package propagate

import (
	"context"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
)

// TestSeqBefore: the binary search over event times finds the seq before
// the first event at or after a time, and stays sane when times go back.
func TestSeqBefore(t *testing.T) {
	e := newEnv(t, journal.FsyncNever)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// seq i+1 has wall time base + i minutes; seq 50 goes back a little
	// (to 47m), as clocks of a cluster's members may.
	for i := range 100 {
		w := base.Add(time.Duration(i) * time.Minute)
		if i == 49 {
			w = base.Add(47 * time.Minute)
		}
		ev := &event.Event{Type: "t.x", HLC: event.HLC{Wall: w.UnixNano()}}
		if _, err := e.m.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		at   time.Time
		want uint64
	}{
		{base.Add(-time.Hour), 0},
		{base, 0},
		{base.Add(10 * time.Minute), 10},
		{base.Add(10*time.Minute + time.Second), 11},
		{base.Add(70 * time.Minute), 70},
		{base.Add(99 * time.Minute), 99},
		{base.Add(3 * time.Hour), 100},
	} {
		got, err := e.m.SeqBefore(tc.at)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("SeqBefore(%v) = %d, want %d", tc.at.Sub(base), got, tc.want)
		}
	}
	// Around the time that went back, the answer is one boundary: the
	// event after it is at or after t and the one at it before.
	got, err := e.m.SeqBefore(base.Add(48 * time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got != 48 && got != 50 {
		t.Errorf("SeqBefore(48m) with seq 50 at 47m = %d, want 48 or 50", got)
	}
}
