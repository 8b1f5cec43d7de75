package api

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/auth"
	"github.com/semprop/semprop/internal/filter"
	"github.com/semprop/semprop/internal/propagate"
)

// A matrix kind is one sort of caller.
type matrixKind struct {
	name  string
	token string // "" sends no token
	anon  bool   // on the server without tokens
	// may: which route classes it is authorized for.
	may map[need]bool
	// secrets must never appear in a body it reads; probes select the
	// secret event by them and must find nothing.
	secrets, probes []string
}

// matrixRoute is how the matrix calls one route.
type matrixRoute struct {
	need               need
	method, path, body string
	ok                 int // status when authorized
	stream, ws         bool
}

const matrixSecretComm = "mkdirsecret"

// matrixRoutes has an entry for every route the server registers: a route
// added without one fails the matrix. {kind} becomes the caller's name.
var matrixRoutes = map[string]matrixRoute{
	"GET /healthz":                        {need: needNothing, method: "GET", path: "/healthz", ok: 200},
	"GET /readyz":                         {need: needNothing, method: "GET", path: "/readyz", ok: 200},
	"GET /v1/openapi.json":                {need: needNothing, method: "GET", path: "/v1/openapi.json", ok: 200},
	"POST /v1/events":                     {need: needPublish, method: "POST", path: "/v1/events", body: `{"specversion":"1.0","id":"m1","source":"app://m","type":"app.m","subject":"/data/m"}`, ok: 200},
	"GET /v1/events":                      {need: needSubscribe, method: "GET", path: "/v1/events", ok: 200},
	"GET /v1/stream":                      {need: needSubscribe, method: "GET", path: "/v1/stream?after=0", ok: 200, stream: true},
	"GET /v1/ws":                          {need: needSubscribe, method: "GET", path: "/v1/ws?after=0", ok: 101, ws: true},
	"POST /v1/subscriptions":              {need: needSubscribe, method: "POST", path: "/v1/subscriptions", body: `{"name":"new-{kind}"}`, ok: 201},
	"GET /v1/subscriptions":               {need: needSubscribe, method: "GET", path: "/v1/subscriptions", ok: 200},
	"DELETE /v1/subscriptions/{name}":     {need: needSubscribe, method: "DELETE", path: "/v1/subscriptions/absent", ok: 404},
	"POST /v1/subscriptions/{name}/fetch": {need: needSubscribe, method: "POST", path: "/v1/subscriptions/mine/fetch?wait=1s&max=10", ok: 200},
	"POST /v1/subscriptions/{name}/ack":   {need: needSubscribe, method: "POST", path: "/v1/subscriptions/mine/ack", body: `{"seqs":[1]}`, ok: 200},
	"GET /v1/routes":                      {need: needAdmin, method: "GET", path: "/v1/routes", ok: 200},
	"POST /v1/routes":                     {need: needAdmin, method: "POST", path: "/v1/routes", body: `{"name":"r-{kind}","type":"app.>","targets":["w1"]}`, ok: 200},
	"DELETE /v1/routes/{name}":            {need: needAdmin, method: "DELETE", path: "/v1/routes/absent", ok: 404},
	"GET /v1/status":                      {need: needAdmin, method: "GET", path: "/v1/status", ok: 200},
	// Registered with Handle as the daemon does (metrics, cluster).
	"GET /metrics": {need: needAdmin, method: "GET", path: "/metrics", ok: 200},
	"/v1/cluster":  {need: needAdmin, method: "GET", path: "/v1/cluster", ok: 200},
	"/v1/cluster/": {need: needAdmin, method: "POST", path: "/v1/cluster/leave", body: `{}`, ok: 200},
}

func matrixServer(t *testing.T, a *auth.Authenticator, kinds []matrixKind) *testServer {
	t.Helper()
	ts := newTestServer(t, Options{Auth: a, Heartbeat: 50 * time.Millisecond})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) })
	ts.api.Handle("GET /metrics", ok)
	ts.api.Handle("/v1/cluster", ok)
	ts.api.Handle("/v1/cluster/", ok)
	w1, err := ts.m.Subscribe(propagate.SubscribeOptions{Name: "w1", RoutedOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w1.Close() })
	secret := &event.Event{Type: "fs.mkdir", Subject: "/data/secretdir/plan.md", Attrs: []event.Attr{{Key: "tenant", Value: "acmesecret"}}}
	secret.Context.Comm, secret.Context.Exe = matrixSecretComm, "/usr/bin/"+matrixSecretComm
	secret.Context.SetUID(0)
	seed(t, ts, secret, &event.Event{Type: "app.end", Subject: "/data/end"})
	// Every caller that may subscribe owns a consumer "mine".
	for _, k := range kinds {
		if k.may[needSubscribe] && k.anon == (a == nil) {
			status, _, _ := do(t, "POST", ts.URL+"/v1/subscriptions", k.token, "application/json", `{"name":"mine"}`)
			if status != 201 {
				t.Fatalf("%s creates its consumer: %d", k.name, status)
			}
		}
	}
	return ts
}

// call makes one matrix request and returns its status, error field and
// body (for streams, what arrived up to the end marker).
func call(t *testing.T, ts *testServer, rt matrixRoute, k matrixKind, query bool) (int, string, string) {
	t.Helper()
	target := ts.URL + strings.ReplaceAll(rt.path, "{kind}", k.name)
	body := strings.ReplaceAll(rt.body, "{kind}", k.name)
	hdr := http.Header{}
	switch {
	case k.token == "":
	case query:
		sep := "?"
		if strings.Contains(target, "?") {
			sep = "&"
		}
		target += sep + "token=" + url.QueryEscape(k.token)
	default:
		hdr.Set("Authorization", "Bearer "+k.token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if rt.ws {
		c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(target, "http"), &websocket.DialOptions{HTTPHeader: hdr})
		if err != nil {
			if resp == nil {
				t.Fatalf("%s: WebSocket dial: %v", k.name, err)
			}
			b, _ := io.ReadAll(resp.Body)
			var e apiError
			json.Unmarshal(b, &e)
			return resp.StatusCode, e.Field, string(b)
		}
		defer c.CloseNow()
		var msgs []string
		for {
			_, msg, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("%s: WebSocket read: %v after %d messages", k.name, err, len(msgs))
			}
			msgs = append(msgs, string(msg))
			if strings.Contains(string(msg), `"type":"app.end"`) {
				return http.StatusSwitchingProtocols, "", strings.Join(msgs, "\n")
			}
		}
	}
	req, _ := http.NewRequestWithContext(ctx, rt.method, target, strings.NewReader(body))
	req.Header = hdr
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
		if rt.path == "/v1/events" {
			req.Header.Set("Content-Type", event.MediaType)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", rt.method, target, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if rt.stream && resp.StatusCode == 200 {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if sc.Text() == "event: app.end" {
				sc.Scan()
				b.WriteString(sc.Text() + "\n")
				break
			}
		}
		return 200, "", b.String()
	}
	raw, _ := io.ReadAll(resp.Body)
	var e apiError
	json.Unmarshal(raw, &e)
	return resp.StatusCode, e.Field, string(raw)
}

// TestAuthorizationMatrixAllRoutes calls every route as every kind of
// caller, with the token in the header and in the query, and checks the
// answer, and that no body shows a redacted value.
func TestAuthorizationMatrixAllRoutes(t *testing.T) {
	all := map[need]bool{needNothing: true, needPublish: true, needSubscribe: true, needAdmin: true}
	nothing := map[need]bool{needNothing: true}
	sub := map[need]bool{needNothing: true, needSubscribe: true}
	redact := func(rules ...filter.RedactRule) *filter.RedactSpec { return &filter.RedactSpec{Rules: rules} }
	kinds := []matrixKind{
		{name: "anonymous", anon: true, may: all},
		{name: "publisher", token: "matrix-publisher-0123456789", may: map[need]bool{needNothing: true, needPublish: true}},
		{name: "subscriber", token: "matrix-subscriber-0123456789", may: sub},
		{name: "path-limited", token: "matrix-limited-0123456789", may: map[need]bool{needNothing: true, needPublish: true, needSubscribe: true}},
		{name: "admin", token: "matrix-admin-0123456789", may: all},
		{name: "red-comm", token: "matrix-red-comm-0123456789", may: sub, secrets: []string{matrixSecretComm},
			probes: []string{`comm == "` + matrixSecretComm + `"`, `exe endsWith "/` + matrixSecretComm + `"`}},
		{name: "red-path", token: "matrix-red-path-0123456789", may: sub, secrets: []string{"secretdir"},
			probes: []string{`path matches "secretdir"`, `subject startsWith "/data/secretdir/"`}},
		{name: "red-attr", token: "matrix-red-attr-0123456789", may: sub, secrets: []string{"acmesecret"},
			probes: []string{`attrs["tenant"] == "acmesecret"`}},
		{name: "red-uid", token: "matrix-red-uid-0123456789", may: sub, secrets: []string{`"uid":0`},
			probes: []string{`uid == 0`}},
		{name: "unknown", token: "matrix-unknown-0123456789", may: nothing},
		{name: "no-token", may: nothing},
	}
	a, err := auth.New([]auth.TokenSpec{
		{Name: "publisher", Token: kinds[1].token, Scopes: []string{"publish:app.>"}},
		{Name: "subscriber", Token: kinds[2].token, Scopes: []string{"subscribe:>"}},
		{Name: "path-limited", Token: kinds[3].token, Scopes: []string{"publish:app.>", "subscribe:>"}, Paths: []string{"/data/**"}},
		{Name: "admin", Token: kinds[4].token, Scopes: []string{"admin"}},
		{Name: "red-comm", Token: kinds[5].token, Scopes: []string{"subscribe:>"}, Redact: redact(filter.RedactRule{Field: "comm", Action: "mask"})},
		{Name: "red-path", Token: kinds[6].token, Scopes: []string{"subscribe:>"}, Redact: redact(filter.RedactRule{Field: "subject", Action: "hash", Segments: []int{1}})},
		{Name: "red-attr", Token: kinds[7].token, Scopes: []string{"subscribe:>"}, Redact: redact(filter.RedactRule{Field: "attrs.tenant", Action: "drop"})},
		{Name: "red-uid", Token: kinds[8].token, Scopes: []string{"subscribe:>"}, Redact: redact(filter.RedactRule{Field: "uid", Action: "drop"})},
	})
	if err != nil {
		t.Fatal(err)
	}
	withTokens := matrixServer(t, a, kinds)
	anonymous := matrixServer(t, nil, kinds)

	// Every registered route is in the matrix.
	var routes []string
	for _, r := range withTokens.api.Routes() {
		if _, ok := matrixRoutes[r]; !ok {
			t.Errorf("route %q is not in the authorization matrix: add it to matrixRoutes", r)
		}
		routes = append(routes, r)
	}
	slices.Sort(routes)

	for _, k := range kinds {
		ts := withTokens
		if k.anon {
			ts = anonymous
		}
		for _, r := range routes {
			rt := matrixRoutes[r]
			for _, query := range []bool{false, true} {
				if query && k.token == "" {
					continue
				}
				status, field, body := call(t, ts, rt, k, query)
				want := rt.ok
				switch {
				case rt.need == needNothing:
				case query && !rt.stream && !rt.ws:
					want = 401 // ?token= only for browser streams
				case k.token == "" && !k.anon, k.name == "unknown":
					want = 401
				case !k.may[rt.need]:
					want = 403
				}
				how := "header"
				if query {
					how = "?token="
				}
				if status != want || ((want == 401 || want == 403) && field != "Authorization") {
					t.Errorf("%s as %s (token in %s) = %d field %q (%.200s), want %d", r, k.name, how, status, field, body, want)
				}
				for _, s := range k.secrets {
					if strings.Contains(body, s) {
						t.Errorf("%s as %s: body shows the redacted %s: %.300s", r, k.name, s, body)
					}
				}
			}
		}
	}

	// Selecting by a redacted value finds nothing for the redacted caller,
	// and finds the event for the admin (the probe is real).
	for _, k := range kinds {
		for _, p := range k.probes {
			q := "/v1/events?filter=" + url.QueryEscape(p)
			if _, _, body := call(t, withTokens, matrixRoute{method: "GET", path: q}, k, false); strings.TrimSpace(body) != "" {
				t.Errorf("%s selects %s: got %.300s, want nothing", k.name, p, body)
			}
			if _, _, body := call(t, withTokens, matrixRoute{method: "GET", path: q}, kinds[4], false); !strings.Contains(body, `"fs.mkdir"`) {
				t.Errorf("admin selects %s: got %.300s, want the secret event", p, body)
			}
		}
	}
}
