package propagate

import (
	"context"
	"testing"
	"time"
)

// A reader who never acks must not make the journal grow: dead letters
// stay in the consumer's own, bounded state.
func TestDeadLettersStayOutOfJournal(t *testing.T) {
	e := newEnv(t, 0)
	const n = 50
	publishN(t, e.m, "job.run", n)
	c, err := e.m.Consumer(ConsumerOptions{Name: "sink", AckWait: time.Millisecond, MaxDeliver: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Fetch everything, never ack, until every event is dead-lettered.
	for c.Info().DeadLettered < n {
		fctx, fcancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, _ = c.Fetch(fctx, 1000)
		fcancel()
		if ctx.Err() != nil {
			t.Fatalf("dead-lettered %d of %d before the deadline", c.Info().DeadLettered, n)
		}
	}
	if last := e.m.Journal().LastSeq(); last != n {
		t.Errorf("journal last seq = %d after %d dead letters, want %d: dead letters were written to the journal", last, n, n)
	}
}

func TestDeadLettersBoundedAndPersisted(t *testing.T) {
	e := newEnv(t, 0)
	publishN(t, e.m, "job.run", 7)
	c, err := e.m.Consumer(ConsumerOptions{Name: "sink", AckWait: time.Millisecond, MaxDeliver: 2, MaxDeadLetters: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for c.Info().DeadLettered < 7 {
		fctx, fcancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, _ = c.Fetch(fctx, 1000)
		fcancel()
		if ctx.Err() != nil {
			t.Fatal("not every event was dead-lettered in time")
		}
	}
	check := func(when string, dl []DeadLetter) {
		t.Helper()
		var seqs []uint64
		for _, d := range dl {
			seqs = append(seqs, d.Seq)
			if d.Type != "job.run" || d.Deliveries != 2 || d.ID == "" || d.Time.IsZero() {
				t.Errorf("%s: dead letter %+v, want type job.run, 2 deliveries, an id and a time", when, d)
			}
		}
		if len(seqs) != 3 || seqs[0] != 5 || seqs[2] != 7 {
			t.Errorf("%s: dead letters of seqs %v, want the newest three [5 6 7]", when, seqs)
		}
	}
	check("open", c.DeadLetters())
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	dl, err := e.m.ConsumerDeadLetters("sink")
	if err != nil {
		t.Fatal(err)
	}
	check("closed", dl)
	c, err = e.m.Consumer(ConsumerOptions{Name: "sink", MaxDeadLetters: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	check("reopened", c.DeadLetters())
	if _, err := e.m.ConsumerDeadLetters("nope"); err == nil {
		t.Error("ConsumerDeadLetters(nope) = nil error, want ErrNoConsumer")
	}
}
