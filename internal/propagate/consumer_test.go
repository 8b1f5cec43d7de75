package propagate

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/route"
)

func next(t *testing.T, c *Consumer, within time.Duration) (Delivery, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return c.Next(ctx)
}

func TestConsumerAckAndCatchUp(t *testing.T) {
	e := newEnv(t, 0)
	publishN(t, e.m, "a.b", 1000) // before the consumer exists: it catches up from disk
	c, err := e.m.Consumer(ConsumerOptions{Name: "idx"})
	if err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 1000; want++ {
		d, err := next(t, c, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if d.Seq != want || d.Attempt != 1 || d.Event.Seq != want {
			t.Fatalf("delivery = seq %d attempt %d, want seq %d attempt 1", d.Seq, d.Attempt, want)
		}
		if err := c.Ack(d.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := next(t, c, 20*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with nothing left = %v, want deadline exceeded", err)
	}
	// Live: a publish wakes a waiting Next.
	go func() {
		time.Sleep(10 * time.Millisecond)
		publishN(t, e.m, "a.b", 1)
	}()
	d, err := next(t, c, 2*time.Second)
	if err != nil || d.Seq != 1001 {
		t.Fatalf("Next = %d, %v; want 1001", d.Seq, err)
	}
	if info := c.Info(); info.AckFloor != 1000 || info.Pending != 1 || info.Acked != 1000 {
		t.Errorf("Info = %+v, want floor 1000, 1 pending, 1000 acked", info)
	}
}

func TestConsumerRedeliveryAndDeadLetter(t *testing.T) {
	e := newEnv(t, 0)
	c, err := e.m.Consumer(ConsumerOptions{Name: "flaky", Matcher: mustPattern(t, "job.*"), AckWait: 20 * time.Millisecond, MaxDeliver: 3})
	if err != nil {
		t.Fatal(err)
	}
	publishN(t, e.m, "job.run", 1)
	var attempts []int
	for range 3 {
		d, err := next(t, c, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if d.Seq != 1 {
			t.Fatalf("delivery of seq %d, want 1", d.Seq)
		}
		attempts = append(attempts, d.Attempt) // never acked
	}
	if len(attempts) != 3 || attempts[0] != 1 || attempts[2] != 3 {
		t.Fatalf("attempts = %v, want [1 2 3]", attempts)
	}
	// The fourth would exceed MaxDeliver: dead-lettered instead, and the
	// consumer moves on (it does not match semprop.deadletter).
	if _, err := next(t, c, 100*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next after max deliveries = %v, want nothing", err)
	}
	if last := e.m.Journal().LastSeq(); last != 1 {
		t.Errorf("journal last seq = %d, want 1: dead letters stay out of the journal", last)
	}
	if dl := c.DeadLetters(); len(dl) != 1 || dl[0].Seq != 1 || dl[0].Deliveries != 3 || dl[0].Type != "job.run" {
		t.Errorf("DeadLetters = %+v, want seq 1 after 3 deliveries", dl)
	}
	if info := c.Info(); info.DeadLettered != 1 || info.Redelivered != 2 || info.AckFloor != 1 {
		t.Errorf("Info = %+v, want 1 dead-lettered, 2 redelivered, floor 1", info)
	}
}

func TestConsumerCursorSurvivesRestart(t *testing.T) {
	e := newEnv(t, 0)
	publishN(t, e.m, "a.b", 10)
	c, err := e.m.Consumer(ConsumerOptions{Name: "keep"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Consumer(ConsumerOptions{Name: "keep"}); !errors.Is(err, ErrBusy) {
		t.Fatalf("second open = %v, want ErrBusy", err)
	}
	// Ack 1-4 and 6; 5 is delivered but not acked.
	for range 6 {
		d, err := next(t, c, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if d.Seq != 5 {
			c.Ack(d.Seq)
		}
	}
	e.reopen(t)
	c, err = e.m.Consumer(ConsumerOptions{Name: "keep"})
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for {
		d, err := next(t, c, 30*time.Millisecond)
		if err != nil {
			break
		}
		got = append(got, d.Seq)
		c.Ack(d.Seq)
	}
	want := []uint64{5, 7, 8, 9, 10}
	if len(got) != len(want) {
		t.Fatalf("after restart got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("after restart got %v, want %v", got, want)
		}
	}
	names, _ := e.m.ConsumerNames()
	if len(names) != 1 || names[0] != "keep" {
		t.Errorf("ConsumerNames = %v", names)
	}
	if err := e.m.DeleteConsumer("keep"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.DeleteConsumer("keep"); !errors.Is(err, ErrNoConsumer) {
		t.Errorf("second delete = %v, want ErrNoConsumer", err)
	}
}

func mustPattern(t *testing.T, p string) Matcher {
	t.Helper()
	cs, err := route.ParseSelector(p, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
