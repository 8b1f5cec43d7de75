package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// restartable is a server whose journal, manager and API can be closed and
// opened again on the same directory, as a daemon restart does.
type restartable struct {
	dir string
	j   *journal.Journal
	m   *propagate.Manager
	s   *Server
	hs  *httptest.Server
	c   *client.Client
}

func newRestartable(t *testing.T) *restartable {
	t.Helper()
	r := &restartable{dir: t.TempDir()}
	r.open(t)
	t.Cleanup(r.close)
	return r
}

func (r *restartable) open(t *testing.T) {
	t.Helper()
	j, err := journal.Open(journal.Options{Dir: r.dir + "/journal", Fsync: journal.FsyncAlways, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: r.dir, Source: "semprop://test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	r.j, r.m = j, m
	r.s = New(Options{Manager: m, Logger: quiet})
	r.s.SetReady(true, "")
	r.hs = httptest.NewServer(r.s)
	r.c = client.New(r.hs.URL, "")
}

func (r *restartable) close() {
	if r.hs == nil {
		return
	}
	r.s.Close()
	r.hs.Close()
	r.m.Close()
	r.j.Close()
	r.hs = nil
}

func (r *restartable) restart(t *testing.T) {
	t.Helper()
	r.close()
	r.open(t)
}

func publishTypes(t *testing.T, m *propagate.Manager, types ...string) {
	t.Helper()
	for i, typ := range types {
		ev := &event.Event{Type: typ, Subject: fmt.Sprintf("/data/%d", i), Source: "semprop://test/app"}
		if _, err := m.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConsumerInfoAfterRestart: listing the consumers right after a
// restart shows each one's cursor, counters and backlog (it showed
// "info":null until something fetched from the consumer).
func TestConsumerInfoAfterRestart(t *testing.T) {
	r := newRestartable(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.c.CreateSubscription(ctx, client.Subscription{Name: "jobs", Type: "job.*", AckWait: "1h"}); err != nil {
		t.Fatal(err)
	}
	publishTypes(t, r.m, "job.a", "other", "job.b", "job.c", "other", "job.d")
	ds, err := r.c.Fetch(ctx, "jobs", 2, time.Second)
	if err != nil || len(ds) != 2 {
		t.Fatalf("Fetch = %d deliveries, %v; want 2", len(ds), err)
	}
	if err := r.c.Ack(ctx, "jobs", ds[0].Event.Seq, ds[1].Event.Seq); err != nil {
		t.Fatal(err)
	}
	r.restart(t)

	// Raw: "info" is an object, never null.
	resp, err := http.Get(r.hs.URL + "/v1/subscriptions")
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Subscriptions []map[string]json.RawMessage `json:"subscriptions"`
	}
	err = json.NewDecoder(resp.Body).Decode(&raw)
	resp.Body.Close()
	if err != nil || len(raw.Subscriptions) != 1 {
		t.Fatalf("GET /v1/subscriptions = %+v, %v", raw, err)
	}
	if info := string(raw.Subscriptions[0]["info"]); info == "" || info == "null" {
		t.Fatalf(`after a restart "info" = %q, want the consumer's state`, info)
	}

	cs, err := r.c.Consumers(ctx)
	if err != nil || len(cs) != 1 {
		t.Fatalf("Consumers = %+v, %v", cs, err)
	}
	want := client.ConsumerInfo{Name: "jobs", AckFloor: 3, Cursor: 3, Head: 6, Lag: 3, Backlog: 2, Delivered: 2, Acked: 2}
	if got := cs[0].Info; got != want {
		t.Errorf("Consumers()[0].Info after restart = %+v, want %+v", got, want)
	}
	one, err := r.c.ConsumerInfo(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	if one.Info != want || one.Spec.Type != "job.*" || one.Name != "jobs" {
		t.Errorf("ConsumerInfo(jobs) = %+v, want info %+v and type job.*", one, want)
	}
	var ce *client.Error
	if _, err := r.c.ConsumerInfo(ctx, "nope"); !errors.As(err, &ce) || ce.Status != http.StatusNotFound {
		t.Errorf("ConsumerInfo(nope) = %v, want 404", err)
	}
	// Once open, the same numbers plus what is in flight.
	ds, err = r.c.Fetch(ctx, "jobs", 1, time.Second)
	if err != nil || len(ds) != 1 || ds[0].Event.Seq != 4 {
		t.Fatalf("Fetch after restart = %+v, %v; want seq 4", ds, err)
	}
	one, err = r.c.ConsumerInfo(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	want = client.ConsumerInfo{Name: "jobs", AckFloor: 3, Pending: 1, Cursor: 4, Head: 6, Lag: 2, Backlog: 1, Delivered: 3, Acked: 2, Open: true}
	if one.Info != want {
		t.Errorf("ConsumerInfo(jobs) while open = %+v, want %+v", one.Info, want)
	}
}

// TestConsumerSpecStrict: a consumer spec with an unknown field or a value
// out of range is refused with 400 naming the field, and nothing is
// created (an unknown field used to create a firehose consumer).
func TestConsumerSpecStrict(t *testing.T) {
	ts := newTestServer(t, Options{})
	for _, tc := range []struct {
		name, body, field string
	}{
		{"unknown field", `{"name":"c4","typo_field":1}`, "typo_field"},
		{"misspelt type", `{"name":"c4","types":"job.*"}`, "types"},
		{"negative max_deliver", `{"name":"c4","max_deliver":-1}`, "max_deliver"},
		{"huge max_deliver", `{"name":"c4","max_deliver":100000000}`, "max_deliver"},
		{"max_deliver not a number", `{"name":"c4","max_deliver":"5"}`, "max_deliver"},
		{"negative ack_wait", `{"name":"c4","ack_wait":"-5s"}`, "ack_wait"},
		{"zero ack_wait", `{"name":"c4","ack_wait":"0s"}`, "ack_wait"},
		{"ack_wait not a duration", `{"name":"c4","ack_wait":"soon"}`, "ack_wait"},
		{"ack_wait too long", `{"name":"c4","ack_wait":"1000h"}`, "ack_wait"},
		{"name too long", `{"name":"` + strings.Repeat("n", 65) + `"}`, "name"},
		{"name missing", `{"type":"job.*"}`, "name"},
		{"name with a slash", `{"name":"a/b"}`, "name"},
		{"bad type pattern", `{"name":"c4","type":"a..b"}`, "type"},
		{"bad filter", `{"name":"c4","filter":"size >"}`, "filter"},
		{"trailing data", `{"name":"c4"} {"name":"c5"}`, ""},
		{"not an object", `["c4"]`, ""},
		{"malformed", `{"name":"c4",}`, "offset 14"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, e, _ := do(t, "POST", ts.URL+"/v1/subscriptions", "", "application/json", tc.body)
			if status != http.StatusBadRequest || e.Field != tc.field {
				t.Errorf("POST %s = %d field %q (%s), want 400 field %q", tc.body, status, e.Field, e.Error, tc.field)
			}
		})
	}
	ctx := context.Background()
	cs, err := ts.c.Consumers(ctx)
	if err != nil || len(cs) != 0 {
		t.Fatalf("after refused specs Consumers = %+v, %v; want none", cs, err)
	}
	// In range is accepted.
	status, e, _ := do(t, "POST", ts.URL+"/v1/subscriptions", "", "application/json", `{"name":"ok","type":"job.*","ack_wait":"2s","max_deliver":3}`)
	if status != http.StatusCreated {
		t.Fatalf("valid spec = %d %+v, want 201", status, e)
	}
	// Acks are strict too.
	for _, tc := range []struct{ body, field string }{
		{`{"seq":[1]}`, "seq"},
		{`{"seqs":["1"]}`, "seqs"},
		{`{"seqs":[-1]}`, "seqs"},
	} {
		status, e, _ := do(t, "POST", ts.URL+"/v1/subscriptions/ok/ack", "", "application/json", tc.body)
		if status != http.StatusBadRequest || e.Field != tc.field {
			t.Errorf("ack %s = %d field %q (%s), want 400 field %q", tc.body, status, e.Field, e.Error, tc.field)
		}
	}
}

// TestConsumerDenyAndRedact: a consumer's deny globs keep events out of it
// and its redaction rules hide fields of what it delivers.
func TestConsumerDenyAndRedact(t *testing.T) {
	ts := newTestServer(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub := client.Subscription{Name: "safe", Type: "app.>", Deny: []string{"**/*.key"},
		Redact: &client.RedactSpec{Rules: []client.RedactRule{{Field: "subject", Action: "mask"}}}}
	if err := ts.c.CreateSubscription(ctx, sub); err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"/data/a.md", "/data/secret.key", "/data/b.md"} {
		if _, err := ts.m.Publish(ctx, &event.Event{Type: "app.x", Subject: subj, Source: "semprop://test/app"}); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := ts.c.Fetch(ctx, "safe", 10, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ds {
		got = append(got, fmt.Sprint(d.Event.Seq, " ", d.Event.Subject))
	}
	if want := []string{"1 ***", "3 ***"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("deliveries = %q, want %q (seq 2 denied, subjects masked)", got, want)
	}
	one, err := ts.c.ConsumerInfo(ctx, "safe")
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Spec.Deny) != 1 || one.Spec.Redact == nil || len(one.Spec.Redact.Rules) != 1 {
		t.Errorf("stored spec = %+v, want the deny glob and the redaction rule", one.Spec)
	}
	for _, tc := range []struct{ body, field string }{
		{`{"name":"d1","deny":["a[b"]}`, "deny"},
		{`{"name":"d2","redact":{"rules":[{"field":"nope","action":"mask"}]}}`, "redact"},
		{`{"name":"d3","redact":{"rules":[{"field":"comm","action":"mask","typo":1}]}}`, "typo"},
	} {
		if status, e, _ := do(t, "POST", ts.URL+"/v1/subscriptions", "", "application/json", tc.body); status != 400 || e.Field != tc.field {
			t.Errorf("POST %s = %d field %q (%s), want 400 field %q", tc.body, status, e.Field, e.Error, tc.field)
		}
	}
}
