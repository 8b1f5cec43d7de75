package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestOpenAPICoversEveryRoute fails when a route is registered without
// being documented in openapi.json (or documented under another method).
func TestOpenAPICoversEveryRoute(t *testing.T) {
	ts := newTestServer(t, Options{})
	ts.api.Handle("GET /metrics", http.NotFoundHandler()) // as the daemon does
	resp, err := http.Get(ts.URL + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi = %q, want 3.x", doc.OpenAPI)
	}
	routes := ts.api.Routes()
	if len(routes) < 12 {
		t.Fatalf("only %d routes registered: %v", len(routes), routes)
	}
	for _, r := range routes {
		method, path, _ := strings.Cut(r, " ")
		if _, ok := doc.Paths[path][strings.ToLower(method)]; !ok {
			t.Errorf("route %q is not in openapi.json", r)
		}
	}
	for _, r := range routes {
		if _, ok := needs[r]; !ok && r != "GET /metrics" {
			t.Errorf("route %q has no entry in needs (it would require admin)", r)
		}
	}
}

// The answers the guards and the storage mapping give are documented.
func TestOpenAPIDocumentsGuards(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openapi, &doc); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, method, code string }{
		{"/v1/events", "post", "507"},
		{"/v1/events", "post", "415"},
		{"/v1/events", "post", "503"},
		{"/v1/routes", "post", "413"},
		{"/v1/subscriptions", "post", "415"},
		{"/v1/stream", "get", "421"},
		{"/readyz", "get", "503"},
	} {
		if _, ok := doc.Paths[tc.path][tc.method].Responses[tc.code]; !ok {
			t.Errorf("%s %s: answer %s is not documented", tc.method, tc.path, tc.code)
		}
	}
}
