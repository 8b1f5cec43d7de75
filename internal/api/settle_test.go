package api

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
)

// settledEvents reads n events from a settled SSE stream.
func settledEvents(t *testing.T, ts *testServer, query string, n int) []*event.Event {
	t.Helper()
	evs, err := readSettled(ts, query, n)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func readSettled(ts *testServer, query string, n int) ([]*event.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/v1/stream?"+query, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("stream?%s: %s", query, resp.Status)
	}
	var out []*event.Event
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for len(out) < n && sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			ev := new(event.Event)
			if err := ev.UnmarshalJSON([]byte(data)); err != nil {
				return nil, fmt.Errorf("event %q: %v", data, err)
			}
			out = append(out, ev)
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("stream?%s: %d events before the deadline, want %d (%v)", query, len(out), n, sc.Err())
	}
	return out, nil
}

// TestSettledStream: a 1,000-event burst on one path becomes one event,
// the last, with count 1000 and the first time; bursts come in the order
// of their last events, so ids increase.
func TestSettledStream(t *testing.T) {
	ts := newTestServer(t, Options{})
	first := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	var evs []*event.Event
	for i := range 1000 {
		evs = append(evs, &event.Event{Type: "app.write", Subject: "/a", Time: first.Add(time.Duration(i) * time.Millisecond),
			Attrs: []event.Attr{{Key: "n", Value: strconv.Itoa(i)}}})
		if i == 500 {
			evs = append(evs, &event.Event{Type: "app.write", Subject: "/b", Time: first})
		}
	}
	publish(t, ts, evs...)
	got := settledEvents(t, ts, "after=0&settle=100ms", 2)
	summary := func(ev *event.Event) string {
		c, _ := ev.Attr("count")
		n, _ := ev.Attr("n")
		return fmt.Sprintf("%s count=%s n=%s seq=%d", ev.Subject, c, n, ev.Seq)
	}
	if s := summary(got[0]); s != "/b count=1 n= seq=502" {
		t.Errorf("first settled event %q, want /b alone (its burst ended first)", s)
	}
	if s := summary(got[1]); s != "/a count=1000 n=999 seq=1001" {
		t.Errorf("second settled event %q, want /a's last state with count 1000", s)
	}
	if f, _ := got[1].Attr("first"); f != first.Format(time.RFC3339Nano) {
		t.Errorf("first = %q, want %q", f, first.Format(time.RFC3339Nano))
	}

	// The Go client asks for the same with Selector.Settle.
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	var viaClient []string
	err := ts.c.Stream(cctx, client.Selector{Type: "app.write", Settle: 100 * time.Millisecond}, 0, func(ev *event.Event) error {
		c, _ := ev.Attr("count")
		viaClient = append(viaClient, ev.Subject+"×"+c)
		if len(viaClient) == 2 {
			ccancel()
		}
		return nil
	})
	ccancel()
	if strings.Join(viaClient, ",") != "/b×1,/a×1000" {
		t.Errorf("client.Stream with Settle = %v (%v), want /b×1,/a×1000", viaClient, err)
	}

	// A burst after the stream started is sent once its path is quiet,
	// with no further event to wake the stream.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		evs []*event.Event
		err error
	}
	done := make(chan result, 1)
	go func() {
		evs, err := readSettled(ts, "settle=50ms&type=app.late", 1)
		done <- result{evs, err}
	}()
	time.Sleep(200 * time.Millisecond) // the stream is open, at now
	for range 5 {
		publish(t, ts, &event.Event{Type: "app.late", Subject: "/c"})
	}
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if c, _ := r.evs[0].Attr("count"); c != "5" {
			t.Errorf("late burst count %q, want 5", c)
		}
	case <-ctx.Done():
		t.Fatal("a quiet burst was never sent")
	}

	for _, q := range []string{"/v1/stream?settle=soon", "/v1/stream?settle=2m", "/v1/events?settle=1s", "/v1/stream?settle=1s&group=g"} {
		resp, err := http.Get(ts.URL + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: %s, want 400", q, resp.Status)
		}
	}
}
