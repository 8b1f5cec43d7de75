package daemon

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/semprop/semprop/internal/config"
	"github.com/semprop/semprop/internal/output"
)

// stepChecks maps each start step to the health components that must
// have a check when the step started something. A new step must be
// added here (the test fails otherwise), with its check.
var stepChecks = map[string][]string{
	"listener":  {"http"},
	"journal":   {"journal", "disk"},
	"manager":   {"consumers"},
	"guard":     {"guard"},
	"rules":     {"rules"},
	"actions":   {"actions"},
	"snapshots": {"snapshots"},
	"analytics": {"analytics"},
	"ui":        {"ui"},
	"outputs":   {"outputs"},
	"sync":      {"sync"},
	"capture":   {"capture", "bridge", "fuse"},
	"monitor":   nil, // the checker itself
	"api":       {"http"},
}

// TestHealthCoverage: with every component on, every component the
// daemon started has a health check (coverage 100%), and /v1/health
// lists them.
func TestHealthCoverage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for fanotify and FUSE")
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "b"), 0o755)
	c := defaults(t)
	c.Mount = []config.Tree{{Backing: filepath.Join(root, "b"), Mountpoint: filepath.Join(root, "m")}}
	rf := filepath.Join(root, "r.yaml")
	os.WriteFile(rf, []byte("rules:\n  - name: r\n    when: 'type == \"app.x\"'\n"), 0o644)
	c.Rules = []string{rf}
	c.Outputs = []output.Config{{Name: "f", Type: "file", File: &output.FileConfig{Path: filepath.Join(root, "out.ndjson")}}}
	c.Sync.Enabled = true
	d, url := startT(t, c)
	var want []string
	for _, s := range d.steps() {
		comps, ok := stepChecks[s.name]
		if !ok {
			t.Errorf("step %q has no entry in stepChecks: which health check covers it?", s.name)
		}
		want = append(want, comps...)
	}
	if miss := d.health.Missing(want); len(miss) > 0 {
		t.Errorf("components without a health check: %v (have %v)", miss, d.health.Components())
	}
	var got struct {
		Checks []struct {
			Name, Component string
			Status          string
		}
	}
	getJSON(t, url+"/v1/health", &got)
	seen := map[string]bool{}
	for _, ch := range got.Checks {
		seen[ch.Component] = true
	}
	for _, comp := range want {
		if !seen[comp] {
			t.Errorf("/v1/health lists no check of %s: %+v", comp, got.Checks)
		}
	}
}
