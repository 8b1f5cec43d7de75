package api

import (
	"bufio"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/semprop/semprop/event"
)

// TestReplaySinceAndTypes: since= starts at the first event of a time (a
// duration back or RFC 3339), and several type= select any of them.
func TestReplaySinceAndTypes(t *testing.T) {
	ts := newTestServer(t, Options{})
	now := time.Now()
	old := now.Add(-time.Hour)
	for i, typ := range []string{"a.x", "b.x", "c.x", "a.y"} {
		at := old
		if i >= 2 {
			at = now
		}
		// HLCs are the daemon's: publish past ones in-process.
		if _, err := ts.m.Publish(context.Background(), &event.Event{Type: typ, HLC: event.HLC{Wall: at.UnixNano() + int64(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		query, want string
	}{
		{"since=10m", "c.x a.y"},
		{"since=2h", "a.x b.x c.x a.y"},
		{"since=" + url.QueryEscape(now.Add(-30*time.Minute).Format(time.RFC3339)), "c.x a.y"},
		{"since=" + url.QueryEscape(now.Add(time.Hour).Format(time.RFC3339)), ""},
		{"type=a.*&type=c.>", "a.x c.x a.y"},
		{"type=a.*&type=c.>&since=10m", "c.x a.y"},
		{"after=1&type=b.x&type=a.y", "b.x a.y"},
	} {
		resp, err := http.Get(ts.URL + "/v1/events?" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev event.Event
			if err := ev.UnmarshalJSON(sc.Bytes()); err != nil {
				t.Fatalf("%s: %v: %s", tc.query, err, sc.Text())
			}
			got = append(got, ev.Type)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.Join(got, " ") != tc.want {
			t.Errorf("events?%s = %d %q, want %q", tc.query, resp.StatusCode, strings.Join(got, " "), tc.want)
		}
	}
	for _, q := range []string{"since=yesterday", "since=-5m", "since=1m&after=0"} {
		resp, err := http.Get(ts.URL + "/v1/events?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("events?%s = %d, want 400", q, resp.StatusCode)
		}
	}
	// A stream since a time announces the position before it.
	if ids := firstIDs(t, ts, "since=10m", "", 2); strings.Join(ids, " ") != "2 3" {
		t.Errorf("stream?since=10m ids = %v, want [2 3]", ids)
	}
}

// TestGroupWebSocket: a WebSocket member of a group gets its share.
func TestGroupWebSocket(t *testing.T) {
	ts := newTestServer(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/v1/ws?group=g&type=job.*", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	sse := joinSSE(t, ts, "group=g&type=job.*")
	waitMembers(t, ts, "g", 2)
	for range 4 {
		publish(t, ts, &event.Event{Type: "job.run"})
	}
	seqs := map[uint64]bool{}
	for range 2 {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ev event.Event
		if err := ev.UnmarshalJSON(b); err != nil {
			t.Fatal(err)
		}
		seqs[ev.Seq] = true
	}
	for len(sse.got()) < 2 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	for _, s := range sse.got() {
		if seqs[s] {
			t.Errorf("seq %d reached both members", s)
		}
		seqs[s] = true
	}
	if len(seqs) != 4 {
		t.Errorf("%d distinct events across the members, want 4", len(seqs))
	}
}
