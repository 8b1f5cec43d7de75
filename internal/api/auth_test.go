package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/auth"
	"github.com/semprop/semprop/internal/filter"
)

const (
	tokPub     = "publisher-token-0123456789"
	tokSub     = "subscriber-token-0123456789"
	tokOther   = "other-subscriber-0123456789"
	tokAdmin   = "admin-token-0123456789abcd"
	tokLimited = "limited-token-0123456789ab"
)

func authServer(t *testing.T) *testServer {
	t.Helper()
	a, err := auth.New([]auth.TokenSpec{
		{Name: "pub", Token: tokPub, Scopes: []string{"publish:app.>", "publish:fs.>"}, Paths: []string{"/data/**"}},
		{Name: "sub", Token: tokSub, Scopes: []string{"subscribe:fs.>"}, Paths: []string{"/data/**"}, Deny: []string{"**/*.key"},
			Redact: &filter.RedactSpec{Rules: []filter.RedactRule{{Field: "comm", Action: "mask"}}}},
		{Name: "other", Token: tokOther, Scopes: []string{"subscribe:>"}},
		{Name: "admin", Token: tokAdmin, Scopes: []string{"admin"}},
		{Name: "limited", Token: tokLimited, Scopes: []string{"subscribe:>"}, Rate: 0.5, Burst: 1, MaxStreams: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, Options{Auth: a, Heartbeat: 50 * time.Millisecond})
	ts.api.Handle("GET /metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	// Seed events as the daemon would (fs.* and capture context are never
	// taken from the network): visible and invisible ones for "sub".
	evs := []*event.Event{
		{Type: "fs.write", Subject: "/data/a.md"},       // 1: sub sees
		{Type: "fs.write", Subject: "/etc/passwd"},      // 2: outside sub's paths
		{Type: "fs.write", Subject: "/data/secret.key"}, // 3: denied
		{Type: "app.thing", Subject: "/data/b"},         // 4: type not subscribed
		{Type: "fs.create", Subject: "/data/c.md"},      // 5: sub sees
	}
	evs[0].Context.Comm = "vim"
	seed(t, ts, evs...)
	return ts
}

// seed publishes evs as the daemon itself would, past the HTTP edge's
// provenance checks.
func seed(t testing.TB, ts *testServer, evs ...*event.Event) {
	t.Helper()
	for _, ev := range evs {
		if ev.Source == "" {
			ev.Source = "semprop://test/kernel"
		}
	}
	if err := ts.m.PublishBatch(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

func do(t *testing.T, method, url, token, ctype, body string) (int, apiError, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e apiError
	json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e, resp.Header
}

func TestAuthorizationMatrix(t *testing.T) {
	ts := authServer(t)
	ev := func(typ, subject string) string {
		return `{"specversion":"1.0","id":"1","type":"` + typ + `","source":"t","subject":"` + subject + `"}`
	}
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		field                           string
	}{
		{"publish no token", "POST", "/v1/events", "", ev("app.x", "/data/a"), 401, "Authorization"},
		{"publish bad token", "POST", "/v1/events", "not-a-real-token-at-all", ev("app.x", "/data/a"), 401, "Authorization"},
		{"publish allowed", "POST", "/v1/events", tokPub, ev("app.x", "/data/a"), 200, ""},
		{"publish outside paths", "POST", "/v1/events", tokPub, ev("app.x", "/etc/x"), 403, "subject"},
		{"publish wrong type", "POST", "/v1/events", tokPub, ev("vector.insert", "/data/a"), 403, "type"},
		{"publish by subscriber", "POST", "/v1/events", tokSub, ev("fs.write", "/data/a"), 403, "Authorization"},
		{"publish by admin", "POST", "/v1/events", tokAdmin, ev("anything.at.all", ""), 200, ""},
		{"replay by publisher", "GET", "/v1/events", tokPub, "", 403, "Authorization"},
		{"stream by publisher", "GET", "/v1/stream", tokPub, "", 403, "Authorization"},
		{"ws by publisher", "GET", "/v1/ws", tokPub, "", 403, "Authorization"},
		{"consumers by publisher", "GET", "/v1/subscriptions", tokPub, "", 403, "Authorization"},
		{"metrics by subscriber", "GET", "/metrics", tokSub, "", 403, "Authorization"},
		{"metrics no token", "GET", "/metrics", "", "", 401, "Authorization"},
		{"metrics by admin", "GET", "/metrics", tokAdmin, "", 200, ""},
		{"health open", "GET", "/healthz", "", "", 200, ""},
		{"ready open", "GET", "/readyz", "", "", 200, ""},
	} {
		status, e, _ := do(t, tc.method, ts.URL+tc.path, tc.token, event.MediaType, tc.body)
		if status != tc.status || e.Field != tc.field {
			t.Errorf("%s: %s %s = %d field %q (%s), want %d field %q", tc.name, tc.method, tc.path, status, e.Field, e.Error, tc.status, tc.field)
		}
	}
}

// seen replays everything a token may see.
func seen(t *testing.T, ts *testServer, token string) []*event.Event {
	t.Helper()
	var out []*event.Event
	_, err := client.New(ts.URL, token).Replay(context.Background(), client.Selector{}, 0, 1000, func(e *event.Event) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func subjects(evs []*event.Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, e.Subject)
	}
	return strings.Join(s, ",")
}

func TestSubscriberSeesOnlyItsEvents(t *testing.T) {
	ts := authServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const want = "/data/a.md,/data/c.md"

	// Replay.
	got := seen(t, ts, tokSub)
	if subjects(got) != want {
		t.Fatalf("replay as sub = %s, want %s", subjects(got), want)
	}
	if got[0].Context.Comm != filter.Mask {
		t.Errorf("comm = %q, want it masked", got[0].Context.Comm)
	}
	if all := seen(t, ts, tokAdmin); len(all) != 5 || all[0].Context.Comm != "vim" {
		t.Errorf("admin sees %d events (comm %q), want all 5 unredacted", len(all), all[0].Context.Comm)
	}

	// SSE.
	var streamed []*event.Event
	sctx, scancel := context.WithCancel(ctx)
	_ = client.New(ts.URL, tokSub).Stream(sctx, client.Selector{}, 0, func(e *event.Event) error {
		streamed = append(streamed, e)
		if len(streamed) == 2 {
			scancel()
		}
		return nil
	})
	scancel()
	if subjects(streamed) != want || streamed[0].Context.Comm != filter.Mask {
		t.Errorf("SSE as sub = %s (comm %q), want %s masked", subjects(streamed), streamed[0].Context.Comm, want)
	}

	// WebSocket (token as a query parameter: browsers cannot set headers).
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/v1/ws?after=0&token="+tokSub, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	var ws []*event.Event
	for len(ws) < 2 {
		_, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		e := new(event.Event)
		e.UnmarshalJSON(msg)
		ws = append(ws, e)
	}
	if subjects(ws) != want {
		t.Errorf("WebSocket as sub = %s, want %s", subjects(ws), want)
	}

	// Durable consumer: holds only what its owner sees; others may not use it.
	sub := client.New(ts.URL, tokSub)
	if err := sub.CreateSubscription(ctx, client.Subscription{Name: "mine"}); err != nil {
		t.Fatal(err)
	}
	ds, err := sub.Fetch(ctx, "mine", 100, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var fetched []*event.Event
	for _, d := range ds {
		fetched = append(fetched, d.Event)
	}
	if subjects(fetched) != want {
		t.Errorf("consumer as sub = %s, want %s", subjects(fetched), want)
	}
	// Another token's consumer does not exist for it: nothing says it does.
	if _, err := client.New(ts.URL, tokOther).Fetch(ctx, "mine", 1, 0); err == nil || err.(*client.Error).Status != 404 {
		t.Errorf("fetch by another token = %v, want 404", err)
	}
	if _, err := client.New(ts.URL, tokAdmin).Fetch(ctx, "mine", 1, 0); err != nil {
		t.Errorf("fetch by admin = %v, want allowed", err)
	}
	status, _, _ := do(t, "GET", ts.URL+"/v1/subscriptions", tokOther, "", "")
	if status != 200 {
		t.Fatalf("list as other = %d", status)
	}
}

func TestRateLimitAndStreamCap(t *testing.T) {
	ts := authServer(t)
	if status, _, _ := do(t, "GET", ts.URL+"/v1/events", tokLimited, "", ""); status != 200 {
		t.Fatalf("first request = %d, want 200", status)
	}
	status, _, hdr := do(t, "GET", ts.URL+"/v1/events", tokLimited, "", "")
	if status != 429 || hdr.Get("Retry-After") == "" {
		t.Fatalf("second request within the limit's interval = %d (Retry-After %q), want 429 with Retry-After", status, hdr.Get("Retry-After"))
	}

	// Stream cap: "other" has the default (64); use a token with cap 1 but
	// no rate limit.
	a, _ := auth.New([]auth.TokenSpec{{Name: "one", Token: "one-stream-token-01234567", Scopes: []string{"subscribe:>"}, MaxStreams: 1}})
	ts2 := newTestServer(t, Options{Auth: a})
	req, _ := http.NewRequest("GET", ts2.URL+"/v1/stream", nil)
	req.Header.Set("Authorization", "Bearer one-stream-token-01234567")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first stream: %v %v", resp, err)
	}
	// The stream counts from before its headers were sent.
	if status, _, _ := do(t, "GET", ts2.URL+"/v1/stream", "one-stream-token-01234567", "", ""); status != 429 {
		t.Errorf("second concurrent stream = %d, want 429", status)
	}
	resp.Body.Close()
}

func TestTokenConfigErrorsNameToken(t *testing.T) {
	for _, tc := range []struct {
		spec auth.TokenSpec
		want string
	}{
		{auth.TokenSpec{Name: "short", Token: "abc", Scopes: []string{"admin"}}, "short"},
		{auth.TokenSpec{Name: "noscope", Token: "long-enough-token-000"}, "noscope"},
		{auth.TokenSpec{Name: "badscope", Token: "long-enough-token-000", Scopes: []string{"read:x"}}, "badscope"},
		{auth.TokenSpec{Name: "badpattern", Token: "long-enough-token-000", Scopes: []string{"publish:fs..x"}}, "badpattern"},
		{auth.TokenSpec{Name: "badglob", Token: "long-enough-token-000", Scopes: []string{"admin"}, Paths: []string{"[a"}}, "badglob"},
		{auth.TokenSpec{Name: "badhash", SHA256: "zz", Scopes: []string{"admin"}}, "badhash"},
	} {
		_, err := auth.New([]auth.TokenSpec{tc.spec})
		if err == nil || !strings.Contains(err.Error(), "token "+tc.want) {
			t.Errorf("auth.New(%+v) = %v, want an error naming token %s", tc.spec, err, tc.want)
		}
	}
}
