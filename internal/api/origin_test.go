package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/internal/auth"
)

// browserReq is one request as a web page (or a program) would send it.
type browserReq struct {
	name           string
	method, path   string
	host           string // "" keeps the server's address
	origin         string
	fetchSite      string // Sec-Fetch-Site
	ctype, body    string
	ce             bool // binary-mode ce-* headers
	want           int
	wantField      string
	opts           func(*Options)
	createConsumer bool // create consumer "c1" first
}

func TestBrowserRequestsRefused(t *testing.T) {
	const evil = "http://evil.example:8080"
	consumerBody := `{"name":"c2"}`
	eventBody := `{"specversion":"1.0","id":"1","source":"app://t","type":"app.x"}`
	for _, tc := range []browserReq{
		// Item 9: a text/plain POST (a "simple" request, no preflight)
		// creates consumers.
		{name: "text/plain consumer", method: "POST", path: "/v1/subscriptions", ctype: "text/plain", body: consumerBody, want: 415, wantField: "Content-Type"},
		{name: "form consumer", method: "POST", path: "/v1/subscriptions", ctype: "application/x-www-form-urlencoded", body: consumerBody, want: 415, wantField: "Content-Type"},
		{name: "no type consumer", method: "POST", path: "/v1/subscriptions", body: consumerBody, want: 415, wantField: "Content-Type"},
		{name: "text/plain ack", method: "POST", path: "/v1/subscriptions/c1/ack", ctype: "text/plain", body: `{"seqs":[1]}`, want: 415, createConsumer: true},
		{name: "text/plain routes", method: "POST", path: "/v1/routes", ctype: "text/plain", body: `{}`, want: 415},
		{name: "text/plain event", method: "POST", path: "/v1/events", ctype: "text/plain", body: eventBody, want: 415},
		{name: "json consumer", method: "POST", path: "/v1/subscriptions", ctype: "application/json; charset=utf-8", body: consumerBody, want: 201},
		{name: "binary mode any type", method: "POST", path: "/v1/events", ctype: "text/plain", body: "hello", ce: true, want: 200},
		{name: "structured event", method: "POST", path: "/v1/events", ctype: "application/cloudevents+json", body: eventBody, want: 200},
		// Cross-origin requests: state-changing, draining, streaming.
		{name: "cross-origin create", method: "POST", path: "/v1/subscriptions", origin: evil, ctype: "application/json", body: consumerBody, want: 403, wantField: "Origin"},
		{name: "cross-origin fetch", method: "POST", path: "/v1/subscriptions/c1/fetch?wait=0s", origin: evil, want: 403, wantField: "Origin", createConsumer: true},
		{name: "cross-origin delete", method: "DELETE", path: "/v1/subscriptions/c1", origin: evil, want: 403, createConsumer: true},
		{name: "cross-origin stream", method: "GET", path: "/v1/stream", origin: evil, want: 403},
		{name: "cross-origin ws", method: "GET", path: "/v1/ws", origin: evil, want: 403},
		{name: "cross-origin replay", method: "GET", path: "/v1/events", origin: evil, want: 403},
		{name: "cross-site fetch metadata", method: "POST", path: "/v1/subscriptions/c1/fetch?wait=0s", fetchSite: "cross-site", want: 403, createConsumer: true},
		{name: "same-site fetch metadata", method: "GET", path: "/v1/events", fetchSite: "same-site", want: 403},
		{name: "null origin", method: "POST", path: "/v1/subscriptions/c1/fetch?wait=0s", origin: "null", want: 403, createConsumer: true},
		{name: "same origin", method: "POST", path: "/v1/subscriptions/c1/fetch?wait=0s", origin: "SELF", fetchSite: "same-origin", want: 200, createConsumer: true},
		{name: "typed into the address bar", method: "GET", path: "/v1/events", fetchSite: "none", want: 200},
		{name: "trusted origin", method: "POST", path: "/v1/subscriptions", origin: "https://app.example", fetchSite: "cross-site", ctype: "application/json", body: consumerBody, want: 201,
			opts: func(o *Options) { o.AllowedOrigins = []string{"https://app.example/"} }},
		{name: "open routes stay open", method: "GET", path: "/healthz", origin: evil, fetchSite: "cross-site", want: 200},
		// DNS rebinding: the page's own name, resolving to 127.0.0.1.
		{name: "rebinding host", method: "GET", path: "/v1/events", host: "evil.example:8080", want: 421, wantField: "Host"},
		{name: "rebinding host post", method: "POST", path: "/v1/subscriptions", host: "evil.example", ctype: "application/json", body: consumerBody, want: 421},
		{name: "rebinding host health", method: "GET", path: "/readyz", host: "evil.example", want: 421},
		{name: "localhost", method: "GET", path: "/v1/events", host: "localhost:8080", want: 200},
		{name: "localhost no port", method: "GET", path: "/v1/events", host: "LOCALHOST", want: 200},
		{name: "ipv6 loopback", method: "GET", path: "/v1/events", host: "[::1]:8080", want: 200},
		{name: "ip literal", method: "GET", path: "/v1/events", host: "192.0.2.7:8080", want: 200},
		{name: "allowed host", method: "GET", path: "/v1/events", host: "events.example.com:8080", want: 200,
			opts: func(o *Options) { o.AllowedHosts = []string{"events.example.com"} }},
		{name: "allowed subdomain", method: "GET", path: "/v1/events", host: "a.example.com", want: 200,
			opts: func(o *Options) { o.AllowedHosts = []string{"*.example.com"} }},
		{name: "allowed subdomain not the parent", method: "GET", path: "/v1/events", host: "example.com", want: 421,
			opts: func(o *Options) { o.AllowedHosts = []string{"*.example.com"} }},
		{name: "any host", method: "GET", path: "/v1/events", host: "evil.example", want: 200,
			opts: func(o *Options) { o.AllowedHosts = []string{"*"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts Options
			if tc.opts != nil {
				tc.opts(&opts)
			}
			ts := newTestServer(t, opts)
			if tc.createConsumer {
				if err := ts.c.CreateSubscription(context.Background(), client.Subscription{Name: "c1"}); err != nil {
					t.Fatal(err)
				}
			}
			req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
			if tc.body == "" {
				req.Body = http.NoBody
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			if tc.origin == "SELF" {
				tc.origin = ts.URL
			}
			for k, v := range map[string]string{"Origin": tc.origin, "Sec-Fetch-Site": tc.fetchSite, "Content-Type": tc.ctype} {
				if v != "" {
					req.Header.Set(k, v)
				}
			}
			if tc.ce {
				req.Header.Set("Ce-Specversion", "1.0")
				req.Header.Set("Ce-Id", "b1")
				req.Header.Set("Ce-Source", "app://t")
				req.Header.Set("Ce-Type", "app.x")
			}
			if tc.path == "/v1/ws" {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
				req.Header.Set("Sec-WebSocket-Version", "13")
				req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := http.DefaultClient.Do(req.WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.want {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
				t.Fatalf("%s %s (Host %q, Origin %q, Sec-Fetch-Site %q, Content-Type %q) = %d %s, want %d",
					tc.method, tc.path, tc.host, tc.origin, tc.fetchSite, tc.ctype, resp.StatusCode, b, tc.want)
			}
			if tc.want >= 400 {
				var e apiError
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("error Content-Type = %q, want application/json", ct)
				}
				if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error == "" {
					t.Errorf("error body: %v %+v", err, e)
				}
				if tc.wantField != "" && e.Field != tc.wantField {
					t.Errorf("field = %q, want %q", e.Field, tc.wantField)
				}
			}
		})
	}
}

// With tokens a rebinding page has nothing to authenticate with: any Host
// is served unless AllowedHosts says otherwise.
func TestHostWithTokens(t *testing.T) {
	a, err := auth.New([]auth.TokenSpec{{Name: "admin", Token: tokAdmin, Scopes: []string{"admin"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		allowed []string
		host    string
		want    int
	}{
		{nil, "events.example.com", 200},
		{[]string{"events.example.com"}, "events.example.com:443", 200},
		{[]string{"events.example.com"}, "evil.example", 421},
	} {
		ts := newTestServer(t, Options{Auth: a, AllowedHosts: tc.allowed})
		req, _ := http.NewRequest("GET", ts.URL+"/v1/events", nil)
		req.Host = tc.host
		req.Header.Set("Authorization", "Bearer "+tokAdmin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("allowed %q, Host %q: %d, want %d", tc.allowed, tc.host, resp.StatusCode, tc.want)
		}
	}
}

// Routes added with Handle (the cluster's) take a JSON body without a
// Content-Type, but not one of another type.
func TestHandledRoutesContentType(t *testing.T) {
	ts := newTestServer(t, Options{})
	ts.api.Handle("POST /v1/cluster/ping", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	for _, tc := range []struct {
		ctype string
		want  int
	}{{"", 200}, {"application/json", 200}, {"text/plain", 415}, {"multipart/form-data; boundary=x", 415}} {
		req, _ := http.NewRequest("POST", ts.URL+"/v1/cluster/ping", strings.NewReader(`{"from":"a"}`))
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Content-Type %q: %d, want %d", tc.ctype, resp.StatusCode, tc.want)
		}
	}
}

func FuzzHostPolicy(f *testing.F) {
	for _, s := range []string{"localhost:8080", "[::1]:1", "::1", "127.0.0.1", "evil.example", "a.example.com.", "[fe80::1%25eth0]:80", "", ":80", "[", "]"} {
		f.Add(s)
	}
	p := newHostPolicy([]string{"*.example.com", "events.example.org"}, false)
	f.Fuzz(func(t *testing.T, host string) {
		if !p.allows(host) {
			return
		}
		// What is allowed is a literal address, a loopback name, or one of
		// the configured names: never another name.
		h := strings.TrimSuffix(strings.ToLower(hostOnly(host)), ".")
		if _, err := netip.ParseAddr(h); err == nil || h == "" {
			return
		}
		if h == "localhost" || strings.HasSuffix(h, ".localhost") || strings.HasSuffix(h, ".example.com") || h == "events.example.org" {
			return
		}
		t.Errorf("allows(%q) = true (host %q)", host, h)
	})
}

func FuzzOriginPolicy(f *testing.F) {
	f.Add("http://evil.example", "127.0.0.1:8080", "")
	f.Add("http://localhost:8080", "localhost:8080", "same-origin")
	p := newOriginPolicy([]string{"https://app.example"})
	f.Fuzz(func(t *testing.T, origin, host, site string) {
		r, _ := http.NewRequest("GET", "http://x/", nil)
		r.Host = host
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if site != "" {
			r.Header.Set("Sec-Fetch-Site", site)
		}
		if !p.allows(r) {
			return
		}
		// Allowed: a trusted origin, or the server's own, or no browser.
		if strings.EqualFold(r.Header.Get("Origin"), "https://app.example") {
			return
		}
		if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
			t.Fatalf("Sec-Fetch-Site %q allowed", s)
		}
		if o := r.Header.Get("Origin"); o != "" {
			u, err := url.Parse(o)
			if err != nil || !strings.EqualFold(u.Host, host) {
				t.Fatalf("Origin %q allowed for Host %q", o, host)
			}
		}
	})
}
