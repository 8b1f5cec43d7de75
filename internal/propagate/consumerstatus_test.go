package propagate

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/semprop/semprop/internal/journal"
)

// TestConsumerStatusAcrossRestart: the status of a consumer is the same
// whether it is open or, after a restart, only stored: cursor, counters,
// lag and the backlog of matching events not yet delivered.
func TestConsumerStatusAcrossRestart(t *testing.T) {
	e := newEnv(t, journal.FsyncAlways)
	// 1-10 job.a, 11-20 other, 21-25 job.b
	publishN(t, e.m, "job.a", 10)
	publishN(t, e.m, "other", 10)
	publishN(t, e.m, "job.b", 5)
	match := mustPattern(t, "job.*")
	c, err := e.m.Consumer(ConsumerOptions{Name: "jobs", Matcher: match, AckWait: time.Hour, MaxDeliver: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Deliver 1-4, ack 1, 2 and 4: 3 stays pending.
	for range 4 {
		d, err := next(t, c, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if d.Seq != 3 {
			c.Ack(d.Seq)
		}
	}
	open, err := e.m.ConsumerStatus("jobs", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := ConsumerInfo{Name: "jobs", AckFloor: 2, Pending: 1, Delivered: 4, Acked: 3, Open: true,
		Cursor: 4, Head: 25, Lag: 21, Backlog: 11} // 5-10 and 21-25
	if diff := cmp.Diff(want, open); diff != "" {
		t.Errorf("ConsumerStatus of the open consumer (-want +got):\n%s", diff)
	}
	if info := c.Info(); info.Cursor != 4 || info.Lag != 21 || !info.Open {
		t.Errorf("Info = %+v, want cursor 4, lag 21, open", info)
	}

	e.reopen(t)
	got, err := e.m.ConsumerStatus("jobs", match, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Stored: the cursor is the ack floor, 3 is to be delivered again
	// (backlog), 4 is acked above the floor (not backlog).
	want = ConsumerInfo{Name: "jobs", AckFloor: 2, Delivered: 4, Acked: 3, Cursor: 2, Head: 25, Lag: 23, Backlog: 12}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ConsumerStatus after a restart (-want +got):\n%s", diff)
	}
	capped, err := e.m.ConsumerStatus("jobs", match, 5)
	if err != nil {
		t.Fatal(err)
	}
	if !capped.BacklogCapped || capped.Backlog != 4 { // 3, 5, 6, 7 of 3..7 (4 is acked)
		t.Errorf("capped status = backlog %d capped %v, want 4 capped", capped.Backlog, capped.BacklogCapped)
	}
	// The counters resume where they were.
	c, err = e.m.Consumer(ConsumerOptions{Name: "jobs", Matcher: match})
	if err != nil {
		t.Fatal(err)
	}
	d, err := next(t, c, time.Second)
	if err != nil || d.Seq != 3 {
		t.Fatalf("first delivery after restart = %d, %v; want 3", d.Seq, err)
	}
	info := c.Info()
	if info.Delivered != 5 || info.Acked != 3 {
		t.Errorf("Info after restart = %+v, want 5 delivered, 3 acked", info)
	}
	if _, err := e.m.ConsumerStatus("nope", nil, 0); err == nil {
		t.Error("ConsumerStatus of a consumer that does not exist: no error")
	}
}

func TestConsumerStatusWithoutBacklog(t *testing.T) {
	e := newEnv(t, journal.FsyncAlways)
	publishN(t, e.m, "a", 3)
	c, err := e.m.Consumer(ConsumerOptions{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	got, err := e.m.ConsumerStatus("x", nil, -1)
	if err != nil || got.Lag != 3 || got.Backlog != 0 || got.BacklogCapped {
		t.Errorf("ConsumerStatus(limit -1) = %+v, %v; want lag 3, backlog not counted", got, err)
	}
	if got, _ := e.m.ConsumerStatus("x", nil, 0); got.Backlog != 3 {
		t.Errorf("ConsumerStatus(limit 0) backlog = %d, want 3", got.Backlog)
	}
}
