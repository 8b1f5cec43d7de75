package output

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/semprop/semprop/event"
)

// allowBatched turns on fast batch publishing on the test stream, with
// the given max_msg_size (0: none).
func (j *jsServer) allowBatched(t testing.TB, maxMsgSize int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := jetstream.StreamConfig{Name: "SEMPROP", Subjects: []string{"semprop.>"}, Storage: j.storage,
		Duplicates: 2 * time.Minute, AllowBatchPublish: true, MaxMsgSize: maxMsgSize}
	if maxMsgSize == 0 {
		cfg.MaxMsgSize = -1
	}
	if _, err := j.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// recreate deletes the test stream and creates it again, empty, with the
// same configuration: its duplicate window is empty too (a purge keeps
// it).
func (j *jsServer) recreate(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := j.js.Stream(ctx, "SEMPROP")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if err := j.js.DeleteStream(ctx, "SEMPROP"); err != nil {
		t.Fatal(err)
	}
	if _, err := j.js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// sinkOf returns the NATS sink of the first output.
func sinkOf(t testing.TB, r *running) *natsSink {
	t.Helper()
	s, ok := r.o.runners[0].sink.(*natsSink)
	if !ok {
		t.Fatalf("sink %T, want *natsSink", r.o.runners[0].sink)
	}
	return s
}

// TestNATSFastBatchForwarding: on a stream that allows it, the output
// publishes in fast batches; every event is stored once, in order, with
// its id as Nats-Msg-Id.
func TestNATSFastBatchForwarding(t *testing.T) {
	for _, mode := range []string{BatchPublishAuto, BatchPublishOff} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			js := newJSServer(t)
			js.allowBatched(t, 0)
			evs := e.publish(t, "fs.write", 3000, 7)
			r := start(t, e, Options{Outputs: []Config{{Name: "n", Type: TypeNATS, Start: "all", BatchSize: 250,
				NATS: &NATSConfig{URL: js.url(), BatchPublish: mode}}}})
			in := r.waitCursor(t, "n", 3000)
			if in.Retries != 0 || in.Sent != 3000 {
				t.Errorf("info %+v: want 3000 sent, no retry", in)
			}
			// The batch ends once the output has nothing more to send
			// (3000 is a multiple of the flow, 125: the acks alone
			// need no end).
			s := sinkOf(t, r)
			for deadline := time.Now().Add(5 * time.Second); mode == BatchPublishAuto && s.fastBatches.Load() == 0 && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			if got, want := s.fastBatches.Load() > 0, mode == BatchPublishAuto; got != want {
				t.Errorf("batch_publish %s: %d fast batches ended, want some: %v", mode, s.fastBatches.Load(), want)
			}
			want := PublishFastBatch
			if mode == BatchPublishOff {
				want = PublishPerMessage
			}
			if got := r.o.Infos()[0].Publish; got != want {
				t.Errorf("batch_publish %s: Info.Publish %q, want %q", mode, got, want)
			}
			recs, raw := js.all(t)
			if len(recs) != 3000 {
				t.Fatalf("%d messages in the stream, want 3000", len(recs))
			}
			for i, m := range raw {
				if recs[i].Seq != uint64(i+1) {
					t.Fatalf("message %d holds seq %d", i, recs[i].Seq)
				}
				if got := m.Header.Get(jetstream.MsgIDHeader); got != evs[i].ID.String() {
					t.Fatalf("message %d Nats-Msg-Id %q, want %s", i, got, evs[i].ID)
				}
			}
		})
	}
}

// newFastBatchSink starts a JetStream server whose stream takes fast
// batches and a sink sending to it.
func newFastBatchSink(t *testing.T) (*jsServer, *natsSink) {
	js := newJSServer(t)
	js.allowBatched(t, 0)
	s, err := newNATS(&NATSConfig{URL: js.url(), AckTimeout: 10 * time.Second}, 1000, 100, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return js, s
}

// fiveSubjects returns n fs.write events with seqs 1..n over five files.
func fiveSubjects(n int) []*event.Event {
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = &event.Event{Type: "fs.write", Subject: fmt.Sprintf("/srv/f%d.md", i%5), Seq: uint64(i + 1)}
		evs[i].ID = event.NewID()
	}
	return evs
}

// TestNATSFastBatchResendStoresNoCopies: the stream de-duplicates the
// messages of a fast batch by Nats-Msg-Id: a batch sent again, whole or
// from its middle, and starting with a message already stored, adds only
// the events it did not hold.
func TestNATSFastBatchResendStoresNoCopies(t *testing.T) {
	js, s := newFastBatchSink(t)
	evs := fiveSubjects(400)
	ctx := t.Context()
	for _, step := range []struct {
		from, to int
		want     int
	}{{0, 300, 300}, {0, 300, 300}, {100, 300, 300}, {250, 400, 400}, {399, 400, 400}} {
		if err := s.Send(ctx, evs[step.from:step.to]); err != nil {
			t.Fatalf("send %d-%d: %v", step.from, step.to, err)
		}
		if got := js.msgs(); got != step.want {
			t.Fatalf("after sending events %d-%d: %d messages, want %d", step.from, step.to, got, step.want)
		}
	}
	if s.fastBatches.Load() != 5 {
		t.Errorf("%d fast batches, want 5", s.fastBatches.Load())
	}
	js.expectSeqs(t, 400)
}

// TestNATSFastBatchTooLarge: the stream refuses a message over its
// max_msg_size inside a fast batch (first, middle and last of it): the
// event is dead-lettered, the others are stored once each, in order.
func TestNATSFastBatchTooLarge(t *testing.T) {
	e := newEnv(t)
	js := newJSServer(t)
	js.allowBatched(t, 1024)
	evs := make([]*event.Event, 30)
	large := map[int]bool{0: true, 12: true, 29: true}
	for i := range evs {
		evs[i] = &event.Event{Type: "fs.write", Subject: fmt.Sprintf("/srv/f%d.md", i%3), Data: []byte(`{"n":1}`)}
		if large[i] {
			evs[i].Data = []byte(`{"pad":"` + strings.Repeat("x", 2048) + `"}`)
		}
	}
	if err := e.m.PublishBatch(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	r := start(t, e, Options{Outputs: []Config{{Name: "n", Type: TypeNATS, Start: "all", BatchSize: 10,
		Retry: RetryConfig{Initial: time.Millisecond, Max: 10 * time.Millisecond},
		NATS:  &NATSConfig{URL: js.url(), AckTimeout: 5 * time.Second}}}})
	in := r.waitCursor(t, "n", 30)
	if in.Sent != 27 || in.DeadLettered != 3 {
		t.Errorf("info %+v: want 27 sent and 3 dead-lettered", in)
	}
	if sinkOf(t, r).fastBatches.Load() == 0 {
		t.Error("no fast batch")
	}
	recs, _ := js.all(t)
	var want []uint64
	for i := range evs {
		if !large[i] {
			want = append(want, uint64(i+1))
		}
	}
	var got []uint64
	for _, r := range recs {
		got = append(got, r.Seq)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stream holds seqs %v, want %v", got, want)
	}
	dl := readLines(t, filepath.Join(e.dir, "outputs", "n", "deadletter.ndjson"))
	if len(dl) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dl))
	}
	for k, i := range []int{0, 12, 29} {
		if id := dl[k]["event"].(map[string]any)["id"]; id != evs[i].ID.String() {
			t.Errorf("dead letter %d is %v, want event %d", k, id, i+1)
		}
	}
}

// TestNATSFastBatchServerRestartAndForwarderKilled: fast batches through
// a server restart mid-stream and two SIGKILLs of the forwarder: every
// event arrives, in per-subject order, none twice.
func TestNATSFastBatchServerRestartAndForwarderKilled(t *testing.T) {
	natsRestartTest(t, true)
}

func TestParseFastReply(t *testing.T) {
	for _, tc := range []struct {
		in  string
		id  string
		seq uint64
		ok  bool
	}{
		{"abc.500.fail.12.1.$FI", "abc", 12, true},
		{"abc.500.fail.1.0.$FI", "abc", 1, true},
		{"abc.500.fail.x.1.$FI", "", 0, false},
		{"abc.500.fail.12.1", "", 0, false},
		{"3", "", 0, false},
	} {
		id, seq, ok := parseFastReply(tc.in)
		if id != tc.id || seq != tc.seq || ok != tc.ok {
			t.Errorf("parseFastReply(%q) = %q, %d, %v, want %q, %d, %v", tc.in, id, seq, ok, tc.id, tc.seq, tc.ok)
		}
	}
}

// TestFastReplyAllocs pins the reply subject of a fast batch message at
// one allocation, the string itself.
func TestFastReplyAllocs(t *testing.T) {
	b := &natsBatch{reply: "_INBOX.x.id.500.fail."}
	if got, want := b.fastReply(123456, opAppend), "_INBOX.x.id.500.fail.123456.1.$FI"; got != want {
		t.Fatalf("fastReply = %q, want %q", got, want)
	}
	if n := testing.AllocsPerRun(100, func() { _ = b.fastReply(123456, opAppend) }); n != 1 {
		t.Errorf("fastReply: %v allocations, want 1", n)
	}
}

// TestNATSFastBatchTurnedOff: a stream that stops taking fast batches
// refuses the next one; the sink goes back to a publish ack per message,
// and every event is stored once, in order.
func TestNATSFastBatchTurnedOff(t *testing.T) {
	js, s := newFastBatchSink(t)
	evs := fiveSubjects(200)
	if err := s.Send(t.Context(), evs[:100]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := js.js.Stream(ctx, "SEMPROP")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.AllowBatchPublish = false
	if _, err := js.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	rest := evs[100:]
	for try := 0; len(rest) > 0; try++ {
		if try == 5 {
			t.Fatalf("%d events not sent after 5 attempts", len(rest))
		}
		err := s.Send(t.Context(), rest)
		if pe, ok := errors.AsType[*partialError](err); ok {
			rest = rest[pe.done:]
		} else if err == nil {
			rest = nil
		}
	}
	if !s.fastOff.Load() {
		t.Error("the sink did not turn fast batches off")
	}
	js.expectSeqs(t, 200)
}
