package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
)

// settledSummary is "subject count=N n=M attempt=A".
func settledSummary(d client.Delivery) string {
	c, _ := d.Event.Attr("count")
	n, _ := d.Event.Attr("n")
	return fmt.Sprintf("%s count=%s n=%s attempt=%d", d.Event.Subject, c, n, d.Attempt)
}

// TestSettledConsumer: a consumer created with settle gets one delivery
// per burst on a path, the last event with count and first; acking it
// acks every event it stands for, and an unacked one comes back settled
// after the ack wait.
func TestSettledConsumer(t *testing.T) {
	ts := newTestServer(t, Options{})
	ctx := context.Background()
	for _, body := range []string{
		`{"name":"jobs","type":"app.write","settle":"100ms","ack_wait":"2s"}`,
		`{"name":"again","type":"app.other","settle":"500ms","ack_wait":"3s"}`,
	} {
		if status, e, _ := do(t, "POST", ts.URL+"/v1/subscriptions", "", "application/json", body); status != http.StatusCreated {
			t.Fatalf("create %s: %d %+v", body, status, e)
		}
	}
	fetch := func(name string, n int, wait time.Duration) []client.Delivery {
		t.Helper()
		var got []client.Delivery
		deadline := time.Now().Add(10 * time.Second)
		for len(got) < n && time.Now().Before(deadline) {
			ds, err := ts.c.Fetch(ctx, name, 100, wait)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ds...)
		}
		return got
	}
	summary := func(ds []client.Delivery) string {
		var sums []string
		for _, d := range ds {
			sums = append(sums, settledSummary(d))
		}
		return strings.Join(sums, ",")
	}

	// A 1,000-write burst (the consumer's max ack pending) is one delivery.
	first := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	var evs []*event.Event
	for i := range 1000 {
		evs = append(evs, &event.Event{Type: "app.write", Subject: "/a", Time: first.Add(time.Duration(i) * time.Millisecond),
			Attrs: []event.Attr{{Key: "n", Value: strconv.Itoa(i)}}})
	}
	publish(t, ts, evs...)
	got := fetch("jobs", 1, 2*time.Second)
	if s := summary(got); s != "/a count=1000 n=999 attempt=1" {
		t.Fatalf("settled deliveries %q, want /a count=1000 n=999 attempt=1", s)
	}
	if f, _ := got[0].Event.Attr("first"); f != first.Format(time.RFC3339Nano) {
		t.Errorf("first = %q, want %q", f, first.Format(time.RFC3339Nano))
	}
	if got[0].Event.Seq != 1000 {
		t.Errorf("settled /a has seq %d, want 1000 (its last event's)", got[0].Event.Seq)
	}
	// Acking the settled delivery acks the 1,000 events.
	if err := ts.c.Ack(ctx, "jobs", got[0].Event.Seq); err != nil {
		t.Fatal(err)
	}
	if info := consumerInfo(t, ts, "jobs"); info.Acked != 1000 || info.Pending != 0 {
		t.Errorf("after acking the settled delivery: acked %d pending %d, want 1000 and 0", info.Acked, info.Pending)
	}

	// Interleaved bursts come in the order of their last events.
	publish(t, ts,
		&event.Event{Type: "app.write", Subject: "/b"}, &event.Event{Type: "app.write", Subject: "/c"},
		&event.Event{Type: "app.write", Subject: "/b"}, &event.Event{Type: "app.write", Subject: "/b"},
		&event.Event{Type: "app.write", Subject: "/c"})
	got = fetch("jobs", 2, 2*time.Second)
	if s := summary(got); s != "/b count=3 n= attempt=1,/c count=2 n= attempt=1" {
		t.Errorf("interleaved bursts %q, want /b count=3 then /c count=2", s)
	}
	var seqs []uint64
	for _, d := range got {
		seqs = append(seqs, d.Event.Seq)
	}
	if err := ts.c.Ack(ctx, "jobs", seqs...); err != nil {
		t.Fatal(err)
	}
	if info := consumerInfo(t, ts, "jobs"); info.Acked != 1005 || info.Pending != 0 {
		t.Errorf("after acking: acked %d pending %d, want 1005 and 0", info.Acked, info.Pending)
	}
	if ds, err := ts.c.Fetch(ctx, "jobs", 100, 2500*time.Millisecond); err != nil || len(ds) != 0 {
		t.Errorf("fetch after the acks = %d deliveries (%v), want none: nothing is redelivered", len(ds), err)
	}

	// Not acked: the burst comes back, settled again, after the ack wait.
	evs = evs[:0]
	for i := range 10 {
		evs = append(evs, &event.Event{Type: "app.other", Subject: "/d", Attrs: []event.Attr{{Key: "n", Value: strconv.Itoa(i)}}})
	}
	publish(t, ts, evs...)
	got = fetch("again", 2, 5*time.Second)
	if s := summary(got); s != "/d count=10 n=9 attempt=1,/d count=10 n=9 attempt=2" {
		t.Errorf("unacked settled deliveries %q, want /d count=10 twice, attempts 1 and 2", s)
	}
}

// TestSettledConsumerSpec: settle is a duration from 1ms to 1m, shorter
// than the ack wait; it is stored with the spec.
func TestSettledConsumerSpec(t *testing.T) {
	ts := newTestServer(t, Options{})
	for _, tc := range []struct {
		body   string
		status int
		field  string
	}{
		{`{"name":"a","settle":"200ms"}`, 201, ""},
		{`{"name":"b","settle":"soon"}`, 400, "settle"},
		{`{"name":"c","settle":"2m"}`, 400, "settle"},
		{`{"name":"d","settle":"0s"}`, 400, "settle"},
		{`{"name":"e","settle":"5s","ack_wait":"5s"}`, 400, "settle"},
		{`{"name":"f","settle":"1m"}`, 400, "settle"}, // not shorter than the default ack wait (30s)
		{`{"name":"g","settle":"1m","ack_wait":"5m"}`, 201, ""},
	} {
		status, e, _ := do(t, "POST", ts.URL+"/v1/subscriptions", "", "application/json", tc.body)
		if status != tc.status || e.Field != tc.field {
			t.Errorf("POST %s: %d field %q (%s), want %d field %q", tc.body, status, e.Field, e.Error, tc.status, tc.field)
		}
	}
	resp, err := http.Get(ts.URL + "/v1/subscriptions?name=a")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Subscriptions []struct {
			Spec map[string]any `json:"spec"`
		} `json:"subscriptions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Subscriptions) != 1 {
		t.Fatalf("GET /v1/subscriptions?name=a: %v %+v", err, list)
	}
	if s := list.Subscriptions[0].Spec["settle"]; s != "200ms" {
		t.Errorf("stored settle %q, want 200ms", s)
	}
}

type consumerCounts struct {
	Acked   uint64 `json:"acked"`
	Pending int    `json:"pending"`
}

func consumerInfo(t *testing.T, ts *testServer, name string) consumerCounts {
	t.Helper()
	resp, err := http.Get(ts.URL + "/v1/subscriptions?name=" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Subscriptions []struct {
			Info consumerCounts `json:"info"`
		} `json:"subscriptions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Subscriptions) != 1 {
		t.Fatalf("GET /v1/subscriptions?name=%s: %v", name, err)
	}
	return list.Subscriptions[0].Info
}

// TestSettledConsumerConcurrentFetch: a fetch waits its own wait, not
// that of another fetch of the consumer.
func TestSettledConsumerConcurrentFetch(t *testing.T) {
	ts := newTestServer(t, Options{})
	if status, e, _ := do(t, "POST", ts.URL+"/v1/subscriptions", "", "application/json", `{"name":"c","settle":"50ms"}`); status != http.StatusCreated {
		t.Fatalf("create: %d %+v", status, e)
	}
	ctx := context.Background()
	long := make(chan error, 1)
	go func() {
		_, err := ts.c.Fetch(ctx, "c", 10, 3*time.Second)
		long <- err
	}()
	time.Sleep(100 * time.Millisecond) // the long fetch has the turn
	start := time.Now()
	if _, err := ts.c.Fetch(ctx, "c", 10, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a fetch with wait=200ms took %v behind another fetch", d)
	}
	if err := <-long; err != nil {
		t.Fatal(err)
	}
}
