package ui

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestVendoredUPlot: the vendored library, its licence and vendor.sh
// agree on one version (a partial update fails here).
func TestVendoredUPlot(t *testing.T) {
	script, err := os.ReadFile("vendor.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VERSION=(\S+)$`).FindSubmatch(script)
	if m == nil {
		t.Fatal("vendor.sh sets no VERSION")
	}
	version := string(m[1])
	js, err := assets.ReadFile("assets/vendor/uPlot.iife.min.js")
	if err != nil {
		t.Fatal(err)
	}
	if head := string(js[:min(len(js), 80)]); !strings.Contains(head, "(v"+version+")") {
		t.Errorf("uPlot.iife.min.js starts %q, want version %s of vendor.sh", head, version)
	}
	v, err := assets.ReadFile("assets/vendor/VERSION")
	if err != nil || !strings.HasPrefix(string(v), "uPlot "+version+" ") {
		t.Errorf("assets/vendor/VERSION = %q (%v), want uPlot %s", v, err, version)
	}
	if lic, err := assets.ReadFile("assets/vendor/LICENSE"); err != nil || !strings.Contains(string(lic), "MIT License") {
		t.Errorf("assets/vendor/LICENSE: missing or not the MIT licence (%v)", err)
	}
}
