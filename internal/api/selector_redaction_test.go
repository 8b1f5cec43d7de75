package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
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
	tokRedacted = "redacted-token-0123456789"
	tokSeeAll   = "see-all-token-0123456789"
	// Secrets the redacted token must never see nor select on.
	secretComm   = "mkdirsecret"
	secretExe    = "/usr/bin/mkdirsecret"
	secretTenant = "acmesecret"
	secretPath   = "/data/secretdir/plan.md"
)

// redactionServer has a token whose comm is masked, subjects hashed, uid
// dropped and the tenant attribute dropped, and one that sees everything;
// it holds one event carrying every secret and an end marker.
func redactionServer(t *testing.T) *testServer {
	t.Helper()
	a, err := auth.New([]auth.TokenSpec{
		{Name: "red", Token: tokRedacted, Scopes: []string{"subscribe:>"}, Redact: &filter.RedactSpec{Rules: []filter.RedactRule{
			{Field: "comm", Action: "mask"},
			{Field: "subject", Action: "hash"},
			{Field: "uid", Action: "drop"},
			{Field: "attrs.tenant", Action: "drop"},
		}}},
		{Name: "all", Token: tokSeeAll, Scopes: []string{"subscribe:>"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, Options{Auth: a, Heartbeat: 50 * time.Millisecond})
	secret := &event.Event{Type: "fs.mkdir", Subject: secretPath, Attrs: []event.Attr{{Key: "tenant", Value: secretTenant}}}
	secret.Context.Comm, secret.Context.Exe = secretComm, secretExe
	secret.Context.SetUID(0)
	seed(t, ts, secret, &event.Event{Type: "app.end", Subject: "/end"})
	return ts
}

// probes select the secret event by what the redacted token must not
// learn; each also selects the end marker, so a stream knows when to stop.
var probes = []struct{ name, filter string }{
	{"comm", `comm == "` + secretComm + `"`},
	{"comm prefix", `comm startsWith "mkdir"`},
	{"exe (reveals comm)", `exe == "` + secretExe + `"`},
	{"subject", `subject == "` + secretPath + `"`},
	{"path glob", `path matches "secretdir"`},
	{"attr", `attrs["tenant"] == "` + secretTenant + `"`},
	{"uid", `uid == 0`},
}

func withEnd(f string) string { return "(" + f + `) || type == "app.end"` }

// readTypes reads a transport's events up to the end marker and returns
// their types.
func replayTypes(t *testing.T, ts *testServer, token, query string) []string {
	t.Helper()
	req, _ := http.NewRequest("GET", ts.URL+"/v1/events?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("replay ?%s = %d %s", query, resp.StatusCode, b)
	}
	var types []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		ev := new(event.Event)
		if err := ev.UnmarshalJSON(sc.Bytes()); err != nil {
			t.Fatalf("replay line %q: %v", sc.Text(), err)
		}
		types = append(types, ev.Type)
	}
	return types
}

func sseTypes(t *testing.T, ts *testServer, token, query string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/v1/stream?after=0&"+query, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var types []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if typ, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			types = append(types, typ)
			if typ == "app.end" {
				return types
			}
		}
	}
	t.Fatalf("SSE ?%s ended before the end marker: %v (%v)", query, types, sc.Err())
	return nil
}

func wsTypes(t *testing.T, ts *testServer, token, query string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/v1/ws?after=0&"+query,
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	var types []string
	for {
		_, msg, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("WebSocket ?%s: %v after %v", query, err, types)
		}
		ev := new(event.Event)
		if err := ev.UnmarshalJSON(msg); err != nil {
			t.Fatal(err)
		}
		types = append(types, ev.Type)
		if ev.Type == "app.end" {
			return types
		}
	}
}

func consumerTypes(t *testing.T, ts *testServer, token, name, filter string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := client.New(ts.URL, token)
	if err := c.CreateSubscription(ctx, client.Subscription{Name: name, Filter: filter}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.DeleteSubscription(context.Background(), name) })
	var types []string
	for len(types) == 0 || types[len(types)-1] != "app.end" {
		ds, err := c.Fetch(ctx, name, 100, time.Second)
		if err != nil {
			t.Fatalf("fetch %s: %v after %v", name, err, types)
		}
		for _, d := range ds {
			types = append(types, d.Event.Type)
		}
	}
	return types
}

// TestSelectorsCannotProbeRedaction: a token's selectors are evaluated on
// events as it sees them. Selecting by a redacted field's true value finds
// nothing, on every read path, while the same selector finds the event for
// a token that sees the field.
func TestSelectorsCannotProbeRedaction(t *testing.T) {
	ts := redactionServer(t)
	transports := []struct {
		name string
		read func(token, query, filter string, i int) []string
	}{
		{"replay", func(token, query, _ string, _ int) []string { return replayTypes(t, ts, token, query) }},
		{"SSE", func(token, query, _ string, _ int) []string { return sseTypes(t, ts, token, query) }},
		{"WebSocket", func(token, query, _ string, _ int) []string { return wsTypes(t, ts, token, query) }},
		{"consumer", func(token, _, filter string, i int) []string {
			return consumerTypes(t, ts, token, "probe"+strconv.Itoa(i)+token[:3], filter)
		}},
	}
	for i, p := range probes {
		f := withEnd(p.filter)
		query := "filter=" + url.QueryEscape(f)
		for _, tr := range transports {
			if got := strings.Join(tr.read(tokRedacted, query, f, i), ","); got != "app.end" {
				t.Errorf("%s as the redacted token, selecting by %s: got %s, want only app.end", tr.name, p.name, got)
			}
			if got := strings.Join(tr.read(tokSeeAll, query, f, i), ","); got != "fs.mkdir,app.end" {
				t.Errorf("%s as a token that sees everything, selecting by %s: got %s, want fs.mkdir,app.end", tr.name, p.name, got)
			}
		}
	}
	// The path parameter, too: a hashed subject is selected by its hash.
	if got := strings.Join(replayTypes(t, ts, tokRedacted, "path="+url.QueryEscape("/data/secretdir/**")), ","); got != "" {
		t.Errorf("replay ?path= of a hashed subject as the redacted token = %s, want nothing", got)
	}
	if got := strings.Join(replayTypes(t, ts, tokSeeAll, "path="+url.QueryEscape("/data/secretdir/**")), ","); got != "fs.mkdir" {
		t.Errorf("replay ?path= as a token that sees everything = %s, want fs.mkdir", got)
	}
	// What the redacted token is shown, it can select on.
	if got := strings.Join(replayTypes(t, ts, tokRedacted, "filter="+url.QueryEscape(`comm == "***"`)), ","); got != "fs.mkdir" {
		t.Errorf("replay selecting comm == \"***\" as the redacted token = %s, want fs.mkdir", got)
	}
}

// TestRedactedValuesNeverInBodies reads every way the redacted token can
// and checks no secret appears in any body.
func TestRedactedValuesNeverInBodies(t *testing.T) {
	ts := redactionServer(t)
	ctx := context.Background()
	c := client.New(ts.URL, tokRedacted)
	if err := c.CreateSubscription(ctx, client.Subscription{Name: "all"}); err != nil {
		t.Fatal(err)
	}
	var bodies []string
	get := func(method, target string) {
		req, _ := http.NewRequest(method, ts.URL+target, nil)
		req.Header.Set("Authorization", "Bearer "+tokRedacted)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		bodies = append(bodies, target+": "+string(b))
	}
	get("GET", "/v1/events")
	get("POST", "/v1/subscriptions/all/fetch?wait=1s")
	get("GET", "/v1/subscriptions")
	bodies = append(bodies, strings.Join(sseTypes(t, ts, tokRedacted, ""), ","))
	for _, b := range bodies {
		for _, secret := range []string{secretComm, secretExe, secretTenant, secretPath, "secretdir", `"uid"`} {
			if strings.Contains(b, secret) {
				t.Errorf("%q appears in a body the redacted token reads: %s", secret, b)
			}
		}
	}
	// And the replayed event is really redacted, not absent.
	var evs []json.RawMessage
	for _, b := range strings.Split(strings.TrimPrefix(bodies[0], "/v1/events: "), "\n") {
		if b != "" {
			evs = append(evs, json.RawMessage(b))
		}
	}
	if len(evs) != 2 || !strings.Contains(string(evs[0]), `"comm":"***"`) {
		t.Errorf("replay as the redacted token = %s, want the masked event and the end marker", evs)
	}
}

// A consumer's stored selector is evaluated as its owner sees events after
// a restart too (the spec is compiled again from storage).
func TestStoredConsumerSelectorSeesRedaction(t *testing.T) {
	ts := redactionServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := withEnd(`comm == "` + secretComm + `"`)
	if err := client.New(ts.URL, tokRedacted).CreateSubscription(ctx, client.Subscription{Name: "stored", Filter: f}); err != nil {
		t.Fatal(err)
	}
	// Restart the API: close the open consumers, serve the same manager.
	ts.api.cons.mu.Lock()
	for _, c := range ts.api.cons.open {
		c.Close()
	}
	clear(ts.api.cons.open)
	ts.api.cons.mu.Unlock()
	var types []string
	for len(types) == 0 || types[len(types)-1] != "app.end" {
		ds, err := client.New(ts.URL, tokRedacted).Fetch(ctx, "stored", 10, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			types = append(types, d.Event.Type)
		}
	}
	if got := strings.Join(types, ","); got != "app.end" {
		t.Errorf("reopened consumer with a stored selector on comm delivers %s, want only app.end", got)
	}
}
