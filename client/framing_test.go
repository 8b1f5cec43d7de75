package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// newServer starts a real semprop API on a temporary journal.
func newServer(t *testing.T) (*httptest.Server, *propagate.Manager) {
	t.Helper()
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	j, err := journal.Open(journal.Options{Dir: dir + "/journal", Fsync: journal.FsyncInterval, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Source: "semprop://test/user", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s := api.New(api.Options{Manager: m, Logger: quiet})
	s.SetReady(true, "")
	hs := httptest.NewServer(s)
	t.Cleanup(func() { s.Close(); hs.Close(); m.Close(); j.Close() })
	return hs, m
}

// TestClientFraming: data with line breaks published through the Go client
// comes back intact through Replay, Stream and Fetch.
func TestClientFraming(t *testing.T) {
	hs, _ := newServer(t)
	c := client.New(hs.URL, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.CreateSubscription(ctx, client.Subscription{Name: "f"}); err != nil {
		t.Fatal(err)
	}
	payloads := []string{
		"{\"a\":1}\n",
		"{\n \"a\": [1,\r\n 2]\r\n}\r\n",
		"\"x\u2028y\u2029z\"\n",
		"[\"nl\\n\", {\"k\": \"\u2028\"}]\n\n",
	}
	var evs []*event.Event
	for _, p := range payloads {
		evs = append(evs, &event.Event{Type: "t.framing", Data: []byte(p)})
	}
	if _, err := c.PublishBatch(ctx, evs[:2]); err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs[2:] {
		if _, err := c.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	check := func(how string, got []*event.Event) {
		t.Helper()
		if len(got) != len(payloads) {
			t.Fatalf("%s gave %d events, want %d", how, len(got), len(payloads))
		}
		for i, ev := range got {
			var want, have any
			json.Unmarshal([]byte(payloads[i]), &want)
			if err := json.Unmarshal(ev.Data, &have); err != nil {
				t.Errorf("%s: event %d data %q: %v", how, i, ev.Data, err)
			}
			if diff := cmp.Diff(want, have); diff != "" {
				t.Errorf("%s: event %d data (-want +got):\n%s", how, i, diff)
			}
			if strings.ContainsAny(string(ev.AppendJSON(nil)), "\r\n\u2028\u2029") {
				t.Errorf("%s: event %d encodes with a line break: %s", how, i, ev.AppendJSON(nil))
			}
		}
	}
	var got []*event.Event
	if _, err := c.Replay(ctx, client.Selector{}, 0, 100, func(e *event.Event) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	check("Replay", got)

	got = nil
	stop := errors.New("stop")
	err := c.Stream(ctx, client.Selector{}, 0, func(e *event.Event) error {
		if got = append(got, e); len(got) == len(payloads) {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("Stream = %v after %d events", err, len(got))
	}
	check("Stream", got)

	ds, err := c.Fetch(ctx, "f", 100, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, d := range ds {
		got = append(got, d.Event)
	}
	check("Fetch", got)
}

// TestStreamSSEFraming: the stream parser follows the Server-Sent Events
// rules: several data lines make one payload, "data:" needs no space, and
// lines end with LF, CRLF or a lone CR.
func TestStreamSSEFraming(t *testing.T) {
	ev := func(seq int, typ string) string {
		return fmt.Sprintf(`{"specversion":"1.0","id":"%d","source":"app://t","type":"%s","seq":%d}`, seq, typ, seq)
	}
	// Event 1 split over two data lines (a newline between JSON tokens),
	// event 2 with CR line ends and no space after the colon, event 3 with
	// CRLF and a comment.
	e1 := ev(1, "a.one")
	body := "id: 1\nevent: a.one\ndata: " + e1[:20] + "\ndata: " + e1[20:] + "\n\n" +
		"id: 2\revent: a.two\rdata:" + ev(2, "a.two") + "\r\r" +
		": comment\r\nid: 3\r\ndata: " + ev(3, "a.three") + "\r\n\r\n" +
		"event: end\ndata: {\"reason\":\"shutdown\"}\n\n"
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("after") != "0" {
			http.Error(w, `{"error":"done"}`, http.StatusBadRequest) // stop the test's reconnect
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, body)
	}))
	defer hs.Close()
	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := client.New(hs.URL, "").Stream(ctx, client.Selector{}, 0, func(e *event.Event) error {
		got = append(got, e.Type)
		return nil
	})
	if want := "a.one,a.two,a.three"; strings.Join(got, ",") != want {
		t.Fatalf("Stream delivered %v (%v), want %s", got, err, want)
	}
}

// TestStreamStopsOnMalformedEvent: an event the client cannot decode ends
// Stream with ErrMalformed instead of reconnecting to it forever.
func TestStreamStopsOnMalformedEvent(t *testing.T) {
	var conns atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conns.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "id: 1\nevent: a\ndata: {\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"a\",\"data\":{\"x\":\n}\n\n")
	}))
	defer hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := client.New(hs.URL, "").Stream(ctx, client.Selector{}, 0, func(e *event.Event) error { return nil })
	if !errors.Is(err, client.ErrMalformed) {
		t.Fatalf("Stream = %v, want ErrMalformed", err)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("Stream connected %d times, want once", n)
	}
}

// TestPublishCompletesEvents: CloudEvents requires id and source; the client
// adds them to a copy of the event, and refuses what JSON cannot carry.
func TestPublishCompletesEvents(t *testing.T) {
	var bodies []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		io.WriteString(w, `{"seqs":[1]}`)
	}))
	defer hs.Close()
	ctx := context.Background()
	c := client.New(hs.URL, "").WithSource("app://indexer")
	ev := &event.Event{Type: "vector.insert"}
	if _, err := c.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if !ev.ID.IsZero() || ev.Source != "" {
		t.Errorf("Publish modified the caller's event: %+v", ev)
	}
	var sent event.Event
	if err := sent.UnmarshalJSON([]byte(bodies[0])); err != nil {
		t.Fatalf("sent %s: %v", bodies[0], err)
	}
	if sent.ID.IsZero() || sent.Source != "app://indexer" {
		t.Errorf("sent id %v source %q, want a new ULID and app://indexer", sent.ID, sent.Source)
	}
	// Without WithSource, the default; an id the caller set is kept.
	if _, err := client.New(hs.URL, "").Publish(ctx, &event.Event{Type: "x", SourceID: "mine"}); err != nil {
		t.Fatal(err)
	}
	if err := sent.UnmarshalJSON([]byte(bodies[1])); err != nil || sent.SourceID != "mine" || sent.Source != client.DefaultSource() {
		t.Errorf("sent %s (%v), want id mine and source %s", bodies[1], err, client.DefaultSource())
	}
	for _, tc := range []struct {
		ev    *event.Event
		field string
	}{
		{&event.Event{Type: "x", Subject: "a\xffb"}, "subject"},
		{&event.Event{Type: "x", Attrs: []event.Attr{{Key: "tenant", Value: "\xc3"}}}, "tenant"},
		{&event.Event{Type: "x", Data: []byte("\"\xff\"")}, "data"},
		{&event.Event{Type: "x", Data: []byte("{\"a\":")}, "data"},
	} {
		n := len(bodies)
		_, err := c.PublishBatch(ctx, []*event.Event{tc.ev})
		var fe *event.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("PublishBatch(%+v) = %v, want a FieldError on %s", tc.ev, err, tc.field)
		}
		if len(bodies) != n {
			t.Errorf("PublishBatch(%+v) sent the event", tc.ev)
		}
	}
}
