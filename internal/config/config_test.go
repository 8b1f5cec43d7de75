package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Data != "./semprop-data" || c.Listen != "127.0.0.1:7878" || c.Fsync != "always" ||
		c.SegmentSize != 64<<20 || c.Limits.MaxData != 1<<20 || !c.FusePassthrough || c.BridgeWindow != 50*time.Millisecond {
		t.Errorf("defaults = %+v", c)
	}
}

func TestFileOverrides(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("fsync: interval\nsegment_size: 1GiB\nwatch: [/data]\n"), 0o644)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Fsync != "interval" || c.SegmentSize != 1<<30 || len(c.Watch) != 1 || c.Listen != "127.0.0.1:7878" {
		t.Errorf("overridden = %+v", c)
	}
}

func TestErrorsNameKey(t *testing.T) {
	for in, want := range map[string]string{
		"segment_size: lots\n":          "size",
		"segment_size: 8700000000GiB\n": "size",
		"no_such_key: 1\n":              "no_such_key",
		"log_level: verbose\n":          "log_level",
		"fsync_interval: -1s\n":         "fsync_interval",
	} {
		p := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(p, []byte(in), 0o644)
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%q) = %v, want an error naming %q", in, err, want)
		}
	}
}

// TestTrees: watch and mount entries are paths or mappings; a mapping
// with an unknown key is refused with the key's name.
func TestTrees(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("watch: [/data, {name: docs, path: /srv/docs}]\nmount: ['/b:/m', {name: x, backing: /b2, mountpoint: /m2}]\n"), 0o644)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []Tree{{Path: "/data"}, {Name: "docs", Path: "/srv/docs"}, {Path: "/b:/m"}, {Name: "x", Backing: "/b2", Mountpoint: "/m2"}}
	got := append(c.Watch, c.Mount...)
	if len(got) != len(want) {
		t.Fatalf("trees = %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("tree %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	os.WriteFile(p, []byte("watch: [{name: docs, dir: /srv/docs}]\n"), 0o644)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "dir") {
		t.Errorf("unknown key: %v", err)
	}
}
