package api

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
)

// firstIDs opens /v1/stream with query and header and returns the ids of
// the first n SSE messages (the position message included).
func firstIDs(t *testing.T, ts *testServer, query, lastEventID string, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/v1/stream?"+query, nil)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("stream?%s: %s", query, resp.Status)
	}
	var ids []string
	sc := bufio.NewScanner(resp.Body)
	for len(ids) < n && sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
			ids = append(ids, v)
		}
	}
	return ids
}

// TestStreamStart: where a stream starts, for every combination of
// ?after= and Last-Event-ID (the header wins: a browser reconnects with
// its original URL).
func TestStreamStart(t *testing.T) {
	ts := newTestServer(t, Options{})
	for range 5 {
		publish(t, ts, &event.Event{Type: "app.x"})
	}
	tests := []struct {
		name, query, lastID string
		want                string // position, then the next event id (if any is durable)
	}{
		{"no after: now", "", "", "5"},
		{"after=now", "after=now", "", "5"},
		{"after=0: the beginning", "after=0", "", "0 1"},
		{"after=3", "after=3", "", "3 4"},
		{"Last-Event-ID alone", "", "2", "2 3"},
		{"Last-Event-ID wins over after", "after=0", "4", "4 5"},
		{"Last-Event-ID wins over after=now", "after=now", "1", "1 2"},
		{"after beyond the end never wraps", "after=18446744073709551615", "", "18446744073709551615"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(strings.Fields(tt.want))
			if got := strings.Join(firstIDs(t, ts, tt.query, tt.lastID, n), " "); got != tt.want {
				t.Errorf("ids %q, want %q", got, tt.want)
			}
		})
	}
	for _, q := range []string{"after=soon", "after=-1"} {
		resp, err := http.Get(ts.URL + "/v1/stream?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("stream?%s: %s, want 400", q, resp.Status)
		}
	}
	// Replay still defaults to the beginning.
	resp, err := http.Get(ts.URL + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	b := new(strings.Builder)
	_, _ = bufio.NewReader(resp.Body).WriteTo(b)
	resp.Body.Close()
	if n := strings.Count(b.String(), "\n"); n != 5 {
		t.Errorf("replay without after: %d events, want 5", n)
	}
}

// TestClientStreamNew: the Go client's StreamNew starts at now: it never
// sees what was published before it connected, and sees what comes after
// once each, in order.
func TestClientStreamNew(t *testing.T) {
	ts := newTestServer(t, Options{})
	publish(t, ts, &event.Event{Type: "app.old"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := client.New(ts.URL, "")
	var mu sync.Mutex
	var got []*event.Event
	done := make(chan error, 1)
	go func() {
		done <- c.StreamNew(ctx, client.Selector{}, func(ev *event.Event) error {
			mu.Lock()
			got = append(got, ev)
			if len(got) == 3 {
				cancel()
			}
			mu.Unlock()
			return nil
		})
	}()
	for ctx.Err() == nil {
		publish(t, ts, &event.Event{Type: "app.new"})
		time.Sleep(20 * time.Millisecond)
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 3 {
		t.Fatalf("StreamNew got %d events before the deadline", len(got))
	}
	for i, ev := range got {
		if ev.Type != "app.new" {
			t.Errorf("event %d: type %s, want only events published after the stream started", i, ev.Type)
		}
		if i > 0 && ev.Seq != got[i-1].Seq+1 {
			t.Errorf("event %d: seq %d after %d: a gap or a duplicate", i, ev.Seq, got[i-1].Seq)
		}
	}
}
