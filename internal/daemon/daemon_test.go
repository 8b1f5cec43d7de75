package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/semprop/semprop/internal/auth"
	"github.com/semprop/semprop/internal/config"
	"github.com/semprop/semprop/internal/journal"
)

func defaults(t *testing.T) *config.Config {
	t.Helper()
	c, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	c.Data = filepath.Join(t.TempDir(), "data")
	c.Listen = "127.0.0.1:0"
	return c
}

func TestFromConfig(t *testing.T) {
	root := t.TempDir()
	p := func(s string) string { return filepath.Join(root, s) }
	for _, d := range []string{"w", "b", "m"} {
		if err := os.Mkdir(p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(p("f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(p("w"), p("link")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*config.Config)
		want string // "" = valid
	}{
		{"defaults", func(*config.Config) {}, ""},
		{"fsync", func(c *config.Config) { c.Fsync = "sometimes" }, "fsync"},
		{"listen", func(c *config.Config) { c.Listen = "nonsense" }, "malformed"},
		{"open listen without tokens", func(c *config.Config) { c.Listen = "0.0.0.0:7878" }, "without tokens"},
		{"tokens in clear on an open listen", func(c *config.Config) {
			c.Listen = "0.0.0.0:7878"
			c.Auth.Tokens = []auth.TokenSpec{{Name: "a", Token: "0123456789abcdef0123", Scopes: []string{"admin"}}}
		}, "clear text"},
		{"watch missing", func(c *config.Config) { c.Watch = config.Trees(p("nope")) }, "--watch"},
		{"watch is a file", func(c *config.Config) { c.Watch = config.Trees(p("f")) }, "not a directory"},
		{"watch twice through a link", func(c *config.Config) { c.Watch = config.Trees(p("w"), p("link")) }, "overlaps"},
		{"data in the watched tree", func(c *config.Config) { c.Watch = config.Trees(p("w")); c.Data = p("w/data") }, "inside"},
		{"mount syntax", func(c *config.Config) { c.Mount = config.Trees("nocolon") }, "BACKING:MOUNTPOINT"},
		{"mount overlap", func(c *config.Config) { c.Mount = config.Trees(p("b") + ":" + p("b/x")) }, "contain each other"},
		{"mount point twice", func(c *config.Config) { c.Mount = config.Trees(p("b")+":"+p("m"), p("w")+":"+p("m")) }, "twice"},
		{"mount of a watched tree", func(c *config.Config) { c.Watch = config.Trees(p("w")); c.Mount = config.Trees(p("w") + ":" + p("m")) }, "overlaps"},
		{"valid watch and mount", func(c *config.Config) {
			c.Watch = config.Trees(p("w"))
			c.Mount = config.Trees(p("b") + ":" + p("m/new"))
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := defaults(t)
			tt.edit(c)
			got, err := FromConfig(c)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("FromConfig = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrConfig)):
				t.Fatalf("FromConfig = %v, want an ErrConfig naming %q", err, tt.want)
			}
			if err == nil && got.Source == "" {
				t.Error("Source is empty")
			}
		})
	}
	if _, err := os.Stat(p("m/new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("FromConfig created the mount point (%v)", err)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestRunAndStop: the daemon serves the API until ctx ends, then stops
// everything and leaves no goroutine behind.
func TestRunAndStop(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := defaults(t)
	cfg, err := FromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	d := New(cfg, quiet())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	url := waitReady(t, d)
	resp, err := http.Post(url+"/v1/events", "application/cloudevents+json",
		strings.NewReader(`{"specversion":"1.0","id":"1","source":"/t","type":"app.x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %s", resp.Status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v after cancel, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	j, err := journal.Open(journal.Options{Dir: filepath.Join(cfg.Data, "journal")})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.LastSeq() != 1 {
		t.Errorf("journal last seq %d after one publish, want 1", j.LastSeq())
	}
}

// TestFailedStartRemovesData: a start that fails after the data directory
// was made removes it again, and what was started is stopped.
func TestFailedStartRemovesData(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := defaults(t)
	cfg, err := FromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	// A watch root that vanishes between validation and start: the
	// watcher fails after the journal was created.
	gone := filepath.Join(t.TempDir(), "gone")
	cfg.Watches = []Watch{{Root: gone}}
	err = New(cfg, quiet()).Run(context.Background())
	if err == nil {
		t.Fatal("Run with a missing watch root = nil, want an error")
	}
	if _, err := os.Stat(cfg.Data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed start left %s behind (%v)", cfg.Data, err)
	}
	// The port is free again.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err == nil {
		ln.Close()
	}
}

func waitReady(t *testing.T, d *Daemon) string {
	t.Helper()
	select {
	case <-d.Started():
	case <-time.After(10 * time.Second):
		t.Fatal("daemon not started within 10s")
	}
	return "http://" + d.Addr()
}

// startT validates c, runs a daemon on it until the test ends (then
// requires a clean stop) and returns the daemon and its API's URL.
func startT(t *testing.T, c *config.Config) (*Daemon, string) {
	d, url, _ := startStop(t, c)
	return d, url
}

// startStop is startT that also returns a stop function, which requires a
// clean stop; the test's end calls it if the test did not.
func startStop(t *testing.T, c *config.Config) (*Daemon, string, func()) {
	t.Helper()
	cfg, err := FromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	d := New(cfg, quiet())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v after cancel, want nil", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("Run did not return within 20s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return d, waitReady(t, d), stop
}
