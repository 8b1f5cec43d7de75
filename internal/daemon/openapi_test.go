package daemon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/semprop/semprop/internal/config"
	"github.com/semprop/semprop/internal/output"
)

// TestOpenAPICoversTheDaemon: every route a daemon with every component
// on registers is in the OpenAPI document it serves, under its method.
func TestOpenAPICoversTheDaemon(t *testing.T) {
	root := t.TempDir()
	c := defaults(t)
	if os.Geteuid() == 0 {
		if _, err := os.Stat("/dev/fuse"); err == nil {
			os.MkdirAll(filepath.Join(root, "b"), 0o755)
			c.Mount = []config.Tree{{Backing: filepath.Join(root, "b"), Mountpoint: filepath.Join(root, "m")}}
		}
	}
	rf := filepath.Join(root, "r.yaml")
	os.WriteFile(rf, []byte("rules:\n  - name: r\n    when: 'type == \"app.x\"'\n"), 0o644)
	c.Rules = []string{rf}
	c.Outputs = []output.Config{{Name: "f", Type: "file", File: &output.FileConfig{Path: filepath.Join(root, "out.ndjson")}}}
	c.Sync.Enabled = true
	d, url := startT(t, c)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	getJSON(t, url+"/v1/openapi.json", &doc)
	routes := d.api.Routes()
	for _, want := range []string{"GET /v1/analytics/top", "GET /ui/", "GET /v1/outputs", "GET /v1/rules", "GET /v1/state", "GET /v1/health"} {
		found := false
		for _, r := range routes {
			found = found || r == want
		}
		if !found {
			t.Errorf("route %s is not registered (routes: %v)", want, routes)
		}
	}
	for _, r := range routes {
		method, path, ok := strings.Cut(r, " ")
		if !ok { // a handler of every method under a path (the cluster's)
			found := false
			for p := range doc.Paths {
				found = found || p == r || strings.HasSuffix(r, "/") && strings.HasPrefix(p, r)
			}
			if !found {
				t.Errorf("route %q is not in openapi.json", r)
			}
			continue
		}
		if _, ok := doc.Paths[path][strings.ToLower(method)]; !ok {
			t.Errorf("route %q is not in openapi.json", r)
		}
	}
}
