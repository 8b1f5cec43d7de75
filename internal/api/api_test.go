package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
	"github.com/semprop/semprop/internal/route"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

type testServer struct {
	*httptest.Server
	api *Server
	m   *propagate.Manager
	c   *client.Client
}

func newTestServer(t testing.TB, opts Options) *testServer {
	t.Helper()
	dir := t.TempDir()
	j, err := journal.Open(journal.Options{Dir: dir + "/journal", Fsync: journal.FsyncInterval, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Source: "semprop://test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	opts.Manager, opts.Logger = m, quiet
	s := New(opts)
	s.SetReady(true, "")
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close()
		hs.Close()
		m.Close()
		j.Close()
	})
	return &testServer{Server: hs, api: s, m: m, c: client.New(hs.URL, "")}
}

func TestCloudEventsSDKModes(t *testing.T) {
	ts := newTestServer(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := cloudevents.NewHTTP(cloudevents.WithTarget(ts.URL + "/v1/events"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cloudevents.NewClient(p)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(id string) cloudevents.Event {
		e := cloudevents.NewEvent()
		e.SetID(id)
		e.SetSource("app://sdk")
		e.SetType("vector.insert")
		e.SetSubject("/docs/" + id)
		e.SetTime(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC))
		e.SetDataSchema("https://example.com/schema")
		e.SetExtension("tenant", "acme")
		e.SetExtension("shard", 7)
		if err := e.SetData(cloudevents.ApplicationJSON, map[string]int{"dims": 768}); err != nil {
			t.Fatal(err)
		}
		return e
	}
	// Binary mode (the SDK's default) and structured mode.
	if res := c.Send(ctx, mk("b-1")); cloudevents.IsUndelivered(res) || !cloudevents.IsACK(res) {
		t.Fatalf("binary send: %v", res)
	}
	if res := c.Send(cloudevents.WithEncodingStructured(ctx), mk("s-2")); !cloudevents.IsACK(res) {
		t.Fatalf("structured send: %v", res)
	}
	// Batch mode: the SDK's batch media type, built from SDK events.
	batch := []cloudevents.Event{mk("x-3"), mk("x-4")}
	body, _ := json.Marshal(batch)
	resp, err := http.Post(ts.URL+"/v1/events", event.MediaTypeBatch, strings.NewReader(string(body)))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("batch: %v %v", resp.Status, err)
	}
	resp.Body.Close()

	var got []*event.Event
	if _, err := ts.c.Replay(ctx, client.Selector{}, 0, 100, func(e *event.Event) error { got = append(got, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("replayed %d events, want 4", len(got))
	}
	for i, id := range []string{"b-1", "s-2", "x-3", "x-4"} {
		// Decode the replayed JSON with the SDK and compare with what was sent.
		var back cloudevents.Event
		if err := json.Unmarshal(got[i].AppendJSON(nil), &back); err != nil {
			t.Fatalf("SDK cannot read replayed event: %v", err)
		}
		want := mk(id)
		if back.ID() != want.ID() || back.Source() != want.Source() || back.Type() != want.Type() ||
			back.Subject() != want.Subject() || !back.Time().Equal(want.Time()) || back.DataSchema() != want.DataSchema() {
			t.Errorf("event %s: got %v, want %v", id, back, want)
		}
		if back.Extensions()["tenant"] != "acme" || fmt.Sprint(back.Extensions()["shard"]) != "7" {
			t.Errorf("event %s extensions = %v, want tenant=acme shard=7", id, back.Extensions())
		}
		var data map[string]int
		if err := back.DataAs(&data); err != nil || data["dims"] != 768 {
			t.Errorf("event %s data = %v (%v), want dims 768", id, data, err)
		}
		if got[i].Seq != uint64(i+1) || got[i].Boundary != event.BoundaryUser {
			t.Errorf("event %s: seq %d boundary %v", id, got[i].Seq, got[i].Boundary)
		}
	}
}

func publish(t testing.TB, ts *testServer, evs ...*event.Event) {
	t.Helper()
	if _, err := ts.c.PublishBatch(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

func TestReplaySelectors(t *testing.T) {
	ts := newTestServer(t, Options{})
	for i, p := range []string{"/data/a.md", "/data/x/b.md", "/data/c.txt", "/home/.ssh/id"} {
		// fs.* events are the daemon's own: published through the
		// manager, as capture does (the API refuses them from the network).
		ev := &event.Event{Type: "fs.write", Subject: p}
		ev.Context.SetSize(int64(i * 10))
		if _, err := ts.m.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		sel  client.Selector
		want string
	}{
		{client.Selector{Type: "fs.>", Path: "/data/**/*.md"}, "/data/a.md,/data/x/b.md"},
		{client.Selector{Filter: "size >= 20"}, "/data/c.txt,/home/.ssh/id"},
		{client.Selector{Type: "vector.*"}, ""},
	} {
		var got []string
		if _, err := ts.c.Replay(context.Background(), tc.sel, 0, 100, func(e *event.Event) error { got = append(got, e.Subject); return nil }); err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("replay %+v = %v, want %s", tc.sel, got, tc.want)
		}
	}
	for q, field := range map[string]string{"type=fs..x": "type", "path=[a": "path", "filter=size%20%3E": "filter", "after=x": "after", "limit=0": "limit"} {
		resp, err := http.Get(ts.URL + "/v1/events?" + q)
		if err != nil {
			t.Fatal(err)
		}
		var e apiError
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 400 || e.Field != field {
			t.Errorf("GET /v1/events?%s = %d field %q, want 400 field %q", q, resp.StatusCode, e.Field, field)
		}
	}
}

func TestWebSocketStream(t *testing.T) {
	ts := newTestServer(t, Options{})
	publish(t, ts, &event.Event{Type: "a.one"}, &event.Event{Type: "b.two"}, &event.Event{Type: "a.three"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/v1/ws?type=a.*&after=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	read := func() *event.Event {
		_, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ev := new(event.Event)
		if err := ev.UnmarshalJSON(msg); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	if ev := read(); ev.Seq != 3 || ev.Type != "a.three" {
		t.Fatalf("first ws event = %d %s, want 3 a.three (after=1 and type=a.*)", ev.Seq, ev.Type)
	}
	publish(t, ts, &event.Event{Type: "a.live"})
	if ev := read(); ev.Seq != 4 || ev.Type != "a.live" {
		t.Fatalf("live ws event = %d %s, want 4 a.live", ev.Seq, ev.Type)
	}
	ts.api.Close() // shutdown: the server says goodbye
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("read after shutdown = %v, want close 1001", err)
	}
}

func TestSSEHeartbeatAndEnd(t *testing.T) {
	ts := newTestServer(t, Options{Heartbeat: 20 * time.Millisecond})
	resp, err := http.Get(ts.URL + "/v1/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sawHeartbeat := false
	for sc.Scan() {
		if sc.Text() == ": heartbeat" {
			sawHeartbeat = true
			ts.api.Close()
		}
		if sc.Text() == "event: end" {
			if !sawHeartbeat {
				t.Fatal("end before any heartbeat")
			}
			return
		}
	}
	t.Fatal("stream closed without an end event")
}

func TestDurableConsumersOverHTTP(t *testing.T) {
	ts := newTestServer(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ts.c.CreateSubscription(ctx, client.Subscription{Name: "idx", Type: "doc.*", AckWait: "50ms"}); err != nil {
		t.Fatal(err)
	}
	if err := ts.c.CreateSubscription(ctx, client.Subscription{Name: "idx"}); err == nil || err.(*client.Error).Status != 409 {
		t.Fatalf("second create = %v, want 409", err)
	}
	if err := ts.c.CreateSubscription(ctx, client.Subscription{Name: "bad", Filter: "size >"}); err == nil || err.(*client.Error).Status != 400 {
		t.Fatalf("bad filter = %v, want 400", err)
	}
	publish(t, ts, &event.Event{Type: "doc.add", Subject: "1"}, &event.Event{Type: "other.x"}, &event.Event{Type: "doc.add", Subject: "2"})
	ds, err := ts.c.Fetch(ctx, "idx", 10, time.Second)
	if err != nil || len(ds) != 2 || ds[0].Event.Subject != "1" || ds[1].Event.Subject != "2" || ds[0].Attempt != 1 {
		t.Fatalf("fetch = %+v, %v; want docs 1 and 2, first attempt", ds, err)
	}
	if err := ts.c.Ack(ctx, "idx", ds[0].Event.Seq); err != nil {
		t.Fatal(err)
	}
	// The unacked one comes back after the ack wait.
	ds, err = ts.c.Fetch(ctx, "idx", 10, 2*time.Second)
	if err != nil || len(ds) != 1 || ds[0].Event.Subject != "2" || ds[0].Attempt != 2 {
		t.Fatalf("redelivery = %+v, %v; want doc 2, attempt 2", ds, err)
	}
	// Consume acks what the callback accepts.
	publish(t, ts, &event.Event{Type: "doc.add", Subject: "3"})
	cctx, ccancel := context.WithCancel(ctx)
	var seen []string
	err = ts.c.Consume(cctx, "idx", func(d client.Delivery) error {
		seen = append(seen, d.Event.Subject)
		if len(seen) == 2 {
			ccancel()
		}
		return nil
	})
	// Doc 3 is new; doc 2 comes again because its ack wait expired again.
	if strings.Join(seen, ",") != "3,2" && strings.Join(seen, ",") != "2,3" {
		t.Fatalf("Consume saw %v (%v), want docs 2 and 3", seen, err)
	}
	if err := ts.c.DeleteSubscription(ctx, "idx"); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.c.Fetch(ctx, "idx", 1, 0); err == nil || err.(*client.Error).Status != 404 {
		t.Fatalf("fetch after delete = %v, want 404", err)
	}
}

func TestDynamicRoutes(t *testing.T) {
	ts := newTestServer(t, Options{})
	// Two in-process workers join a group by name.
	w1, _ := ts.m.Subscribe(propagate.SubscribeOptions{Name: "w1", RoutedOnly: true})
	w2, _ := ts.m.Subscribe(propagate.SubscribeOptions{Name: "w2", RoutedOnly: true})
	post := func(body string) (int, apiError) {
		status, e, _ := do(t, "POST", ts.URL+"/v1/routes", "", "application/json", body)
		return status, e
	}
	if status, e := post(`{"name":"jobs","type":"job.*","targets":["w1","w2"],"strategy":"round-robin"}`); status != 200 {
		t.Fatalf("add route = %d %+v", status, e)
	}
	if status, e := post(`{"name":"x","type":"job.*","targets":["ghost"]}`); status != 400 || e.Field != "targets" {
		t.Errorf("route to an unknown subscription = %d %+v, want 400 targets", status, e)
	}
	if status, e := post(`{"name":"y","type":"fs..x","targets":["w1"]}`); status != 400 || e.Field != "type" {
		t.Errorf("route with a bad pattern = %d %+v, want 400 type", status, e)
	}
	for range 10 {
		publish(t, ts, &event.Event{Type: "job.run"})
	}
	count := func(s *propagate.Subscription) int {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		n := 0
		for {
			if _, err := s.Next(ctx); err != nil {
				return n
			}
			n++
		}
	}
	if a, b := count(w1), count(w2); a != 5 || b != 5 {
		t.Errorf("round-robin gave %d and %d, want 5 and 5", a, b)
	}
	resp, _ := http.Get(ts.URL + "/v1/routes")
	var list struct{ Routes []route.RouteInfo }
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	// The route, then the routed-only subscriptions it targets.
	if len(list.Routes) != 3 || list.Routes[0].Name != "jobs" || list.Routes[0].Strategy != "round-robin" ||
		list.Routes[1].Kind != "subscription" || list.Routes[2].Kind != "subscription" {
		t.Errorf("GET /v1/routes = %+v", list.Routes)
	}
	if status, _, _ := do(t, "DELETE", ts.URL+"/v1/routes/jobs", "", "", ""); status != 204 {
		t.Errorf("delete = %d, want 204", status)
	}
	if status, _, _ := do(t, "DELETE", ts.URL+"/v1/routes/jobs", "", "", ""); status != 404 {
		t.Errorf("second delete = %d, want 404", status)
	}
	publish(t, ts, &event.Event{Type: "job.run"})
	if a, b := count(w1), count(w2); a+b != 0 {
		t.Errorf("after removal the group still got %d events", a+b)
	}
}
