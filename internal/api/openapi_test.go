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
