package output

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/semprop/semprop/event"
)

// fakeJS is a plain NATS server (no JetStream) with a responder standing
// in for a stream: it answers each message published on semprop.> with a
// publish ack, or holds the answer back, or refuses the message, as the
// test's decide function says. It records every arrival's Nats-Msg-Id.
type fakeJS struct {
	url string

	mu     sync.Mutex // guards the fields below
	ids    []string   // Nats-Msg-Id of each arrival, in order
	held   []*nats.Msg
	seq    int
	decide func(id string, arrival int) string // "ack", "hold" or "refuse"
}

func newFakeJS(t *testing.T, decide func(id string, arrival int) string) *fakeJS {
	t.Helper()
	return newFakeJSMax(t, 0, decide)
}

// newFakeJSMax is newFakeJS with the server's max_payload (0: default).
func newFakeJSMax(t *testing.T, maxPayload int32, decide func(id string, arrival int) string) *fakeJS {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, MaxPayload: maxPayload})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	f := &fakeJS{url: s.ClientURL(), decide: decide}
	nc, err := nats.Connect(f.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := nc.Subscribe("semprop.>", f.handle); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeJS) handle(m *nats.Msg) {
	f.mu.Lock()
	id := m.Header.Get(jetstream.MsgIDHeader)
	f.ids = append(f.ids, id)
	action := f.decide(id, len(f.ids))
	if action == "hold" {
		f.held = append(f.held, m)
		f.mu.Unlock()
		return
	}
	var ack string
	if action == "refuse" {
		ack = `{"error":{"code":503,"err_code":10077,"description":"test refuses"}}`
	} else {
		f.seq++
		ack = `{"stream":"SEMPROP","seq":` + strconv.Itoa(f.seq) + `}`
	}
	f.mu.Unlock()
	_ = m.Respond([]byte(ack))
}

// release acks the held messages, in arrival order.
func (f *fakeJS) release() {
	f.mu.Lock()
	held := f.held
	f.held = nil
	f.mu.Unlock()
	for _, m := range held {
		f.mu.Lock()
		f.seq++
		ack := `{"stream":"SEMPROP","seq":` + strconv.Itoa(f.seq) + `}`
		f.mu.Unlock()
		_ = m.Respond([]byte(ack))
	}
}

// arrivals returns how often each id arrived, and the number of arrivals.
func (f *fakeJS) arrivals() (map[string]int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := map[string]int{}
	for _, id := range f.ids {
		n[id]++
	}
	return n, len(f.ids)
}

// waitArrivals waits until n distinct ids arrived.
func (f *fakeJS) waitArrivals(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, total := f.arrivals()
		if len(got) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d distinct messages (%d arrivals) within %v, want %d", len(got), total, within, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestNATSKeepsBatchesInFlight: the output publishes the next batches
// while the acks of the first are still outstanding (a target that
// answers only once it holds three batches gets them), and its cursor
// never passes an event whose ack it has not seen.
func TestNATSKeepsBatchesInFlight(t *testing.T) {
	e := newEnv(t)
	evs := e.publish(t, "fs.write", 30, 3)
	first := map[string]bool{}
	for _, ev := range evs[:10] {
		first[ev.ID.String()] = true
	}
	// Hold the first batch's acks; ack the others at once.
	f := newFakeJS(t, func(id string, _ int) string {
		if first[id] {
			return "hold"
		}
		return "ack"
	})
	r := start(t, e, Options{Outputs: []Config{{Name: "n", Type: TypeNATS, Start: "all", BatchSize: 10,
		NATS: &NATSConfig{URL: f.url, AckTimeout: time.Minute}}}})
	f.waitArrivals(t, 30, 5*time.Second)
	time.Sleep(100 * time.Millisecond) // the acks of batches 2 and 3 are in
	if in := r.o.Infos()[0]; in.Cursor != 0 || in.Sent != 0 {
		t.Fatalf("batch 1 unacknowledged: cursor %d sent %d, want 0 and 0", in.Cursor, in.Sent)
	}
	f.release()
	in := r.waitCursor(t, "n", 30)
	if in.Cursor != 30 || in.Sent != 30 || in.Batches != 3 || in.Retries != 0 {
		t.Errorf("info %+v: want cursor 30, sent 30, 3 batches, no retry", in)
	}
	got, total := f.arrivals()
	if len(got) != 30 || total != 30 {
		t.Errorf("%d messages, %d arrivals: want 30 sent once each", len(got), total)
	}
}

// TestNATSResendsFromFirstUnacked: a refused publish in the middle of the
// window is sent again, and so is what follows it that was not acked, but
// not the events before it that were.
func TestNATSResendsFromFirstUnacked(t *testing.T) {
	e := newEnv(t)
	evs := e.publish(t, "fs.write", 30, 3)
	refuse := evs[14].ID.String() // batch 2, its fifth event
	f := newFakeJS(t, func(id string, _ int) string {
		if id == refuse && !refused(id) {
			return "refuse"
		}
		return "ack"
	})
	r := startNATS(t, e, f.url, time.Minute)
	in := r.waitCursor(t, "n", 30)
	got, _ := f.arrivals()
	for i, ev := range evs {
		n := got[ev.ID.String()]
		switch {
		case i < 14 && n != 1:
			t.Errorf("event %d (acked before the refusal) arrived %d times, want once", i+1, n)
		case i == 14 && n != 2:
			t.Errorf("event %d (refused once) arrived %d times, want twice", i+1, n)
		case n < 1:
			t.Errorf("event %d never arrived", i+1)
		}
	}
	if in.Retries < 1 || in.Sent < 30 {
		t.Errorf("info %+v: want a retry and 30 sent", in)
	}
}

var (
	refusedMu  sync.Mutex
	refusedIDs = map[string]bool{}
)

// refused reports whether id was refused before, and marks it refused.
func refused(id string) bool {
	refusedMu.Lock()
	defer refusedMu.Unlock()
	was := refusedIDs[id]
	refusedIDs[id] = true
	return was
}

func TestPubAckErr(t *testing.T) {
	for _, tc := range []struct {
		data   string
		status string
		want   error // nil, errBadAck, errNoResponders, ErrRejected, or errAny
	}{
		{`{"stream":"SEMPROP","seq":12}`, "", nil},
		{`{"stream":"SEMPROP","seq":12,"duplicate":true}`, "", nil},
		{`{"seq":12,"stream":"SEMPROP"}`, "", nil},
		{`{"stream":"","seq":12}`, "", errBadAck},
		{`{"stream":"S","seq":12`, "", errBadAck},
		{`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`, "", errAny},
		{`{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}`, "", ErrRejected},
		{`{"stream":"S","seq":1,"error":{"code":500,"description":"x"}}`, "", errAny},
		{``, "503", errNoResponders},
		{``, "", errBadAck},
	} {
		h := nats.Header{}
		if tc.status != "" {
			h.Set("Status", tc.status)
		}
		err := pubAckErr([]byte(tc.data), h)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("pubAckErr(%q) = %v, want nil", tc.data, err)
		case tc.want == errAny && err == nil:
			t.Errorf("pubAckErr(%q) = nil, want an error", tc.data)
		case tc.want != nil && tc.want != errAny && !errors.Is(err, tc.want):
			t.Errorf("pubAckErr(%q) = %v, want %v", tc.data, err, tc.want)
		}
	}
}

var errAny = errors.New("any error")

// TestNATSAckTimeoutResends: an ack that never comes fails its batch after
// ack_timeout; the output reconnects and sends again from that event on.
func TestNATSAckTimeoutResends(t *testing.T) {
	e := newEnv(t)
	evs := e.publish(t, "fs.write", 30, 3)
	lost := evs[4].ID.String()
	var once sync.Once
	f := newFakeJS(t, func(id string, _ int) string {
		action := "ack"
		if id == lost {
			once.Do(func() { action = "hold" })
		}
		return action
	})
	r := startNATS(t, e, f.url, 300*time.Millisecond)
	in := r.waitCursor(t, "n", 30)
	got, _ := f.arrivals()
	for i, ev := range evs {
		n := got[ev.ID.String()]
		switch {
		case i < 4 && n != 1:
			t.Errorf("event %d (acked) arrived %d times, want once", i+1, n)
		case i == 4 && n != 2:
			t.Errorf("event %d (ack lost) arrived %d times, want twice", i+1, n)
		case n < 1:
			t.Errorf("event %d never arrived", i+1)
		}
	}
	if in.Retries < 1 || !strings.Contains(in.LastError, "no publish ack") {
		t.Errorf("info %+v: want a retry after an ack timeout", in)
	}
}

// TestNATSTooLargeDeadLetters: a message larger than the server's
// max_payload can never be published: it is dead-lettered, the events
// around it go on.
func TestNATSTooLargeDeadLetters(t *testing.T) {
	e := newEnv(t)
	evs := publishTooLarge(t, e, 30)
	f := newFakeJSMax(t, 2048, func(string, int) string { return "ack" })
	r := startNATS(t, e, f.url, time.Minute)
	in := r.waitSent(t, "n", 30)
	if in.Sent != 29 || in.DeadLettered != 1 {
		t.Errorf("sent %d dead-lettered %d, want 29 and 1", in.Sent, in.DeadLettered)
	}
	got, _ := f.arrivals()
	for i, ev := range evs {
		if n := got[ev.ID.String()]; (i == 12) != (n == 0) {
			t.Errorf("event %d arrived %d times", i+1, n)
		}
	}
	dl := readLines(t, filepath.Join(e.dir, "outputs", "n", "deadletter.ndjson"))
	if len(dl) != 1 || dl[0]["event"].(map[string]any)["id"] != evs[12].ID.String() {
		t.Errorf("dead letters %v, want event 13", dl)
	}
}

// TestNATSHotPathAllocs pins the per-event work of the JetStream output
// that is its own at zero allocations: the subject (from its cache) and a
// publish ack.
func TestNATSHotPathAllocs(t *testing.T) {
	s, err := newNATS(&NATSConfig{URL: "nats://127.0.0.1:1"}, 16, 8, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ev := &event.Event{Type: "fs.write", Subject: "/srv/a/b.md"}
	if got := s.subjectOf(ev); got != "semprop.fs.write.srv.a.b_md" {
		t.Fatalf("subjectOf = %q", got)
	}
	if n := testing.AllocsPerRun(100, func() { _ = s.subjectOf(ev) }); n != 0 {
		t.Errorf("subjectOf (cached): %v allocations, want 0", n)
	}
	ack := []byte(`{"stream":"SEMPROP","seq":123456}`)
	if n := testing.AllocsPerRun(100, func() {
		if pubAckErr(ack, nil) != nil {
			t.Fatal("ack refused")
		}
	}); n != 0 {
		t.Errorf("pubAckErr: %v allocations, want 0", n)
	}
}

// publishTooLarge publishes n small events over three files, event 13
// (index 12) with 4 KiB of data: larger than a 2 KiB max_payload.
func publishTooLarge(t *testing.T, e *env, n int) []*event.Event {
	t.Helper()
	evs := make([]*event.Event, n)
	for i := range evs {
		evs[i] = &event.Event{Type: "fs.write", Subject: fmt.Sprintf("/srv/f%d.md", i%3), Data: []byte(`{"n":1}`)}
	}
	evs[12].Data = []byte(`{"pad":"` + strings.Repeat("x", 4096) + `"}`)
	if err := e.m.PublishBatch(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	return evs
}

// startNATS runs output "n" over the whole journal into the JetStream at
// url, in batches of 10, retrying quickly.
func startNATS(t *testing.T, e *env, url string, ackTimeout time.Duration) *running {
	t.Helper()
	return start(t, e, Options{Outputs: []Config{{Name: "n", Type: TypeNATS, Start: "all", BatchSize: 10,
		Retry: RetryConfig{Initial: time.Millisecond, Max: 10 * time.Millisecond},
		NATS:  &NATSConfig{URL: url, AckTimeout: ackTimeout}}}})
}

// TestNATSTooLargeKeepsOrder: a message larger than max_payload in the
// middle of a batch, with batches after it in flight: the events after it
// still arrive, for the first time, in seq order (per subject).
func TestNATSTooLargeKeepsOrder(t *testing.T) {
	e := newEnv(t)
	evs := publishTooLarge(t, e, 60)
	f := newFakeJSMax(t, 2048, func(string, int) string { return "ack" })
	r := startNATS(t, e, f.url, time.Minute)
	r.waitCursor(t, "n", 60)
	f.mu.Lock()
	ids := append([]string(nil), f.ids...)
	f.mu.Unlock()
	index := map[string]int{}
	for i, ev := range evs {
		index[ev.ID.String()] = i
	}
	seen := map[string]bool{}
	last := map[int]int{} // by subject: the last event arrived first
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		i := index[id]
		if l, ok := last[i%3]; ok && i < l {
			t.Errorf("event %d first arrived after event %d of the same subject", i+1, l+1)
		}
		last[i%3] = i
	}
}
