package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
	"github.com/semprop/semprop/internal/replica"
)

// newSyncServer runs a daemon's API with a replica over tree "docs" at
// /srv/docs and the given files written.
func newSyncServer(t *testing.T, files map[string]string) string {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	j, err := journal.Open(journal.Options{Dir: dir + "/journal", Fsync: journal.FsyncNever, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Source: "semprop://test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	r, err := replica.New(replica.Options{
		Config: replica.Config{Name: "laptop", Interval: 50 * time.Millisecond},
		Open:   func(from uint64) (replica.Source, error) { return m.Reader(from) },
		Resolve: func(abs string) (string, string, bool) {
			rel, ok := strings.CutPrefix(abs, "/srv/docs/")
			return "docs", rel, ok
		},
		Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := api.New(api.Options{Manager: m, Logger: quiet})
	r.Register(s)
	s.SetReady(true, "")
	hs := httptest.NewServer(s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		s.Close()
		hs.Close()
		m.Close()
		j.Close()
	})
	for p, hash := range files {
		ev := &event.Event{Type: event.TypeWrite, Subject: "/srv/docs/" + p, Boundary: event.BoundaryKernel}
		ev.Context.SetSize(int64(len(hash)))
		ev.SetAttr("hash", hash)
		if _, err := m.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.Applied() < j.LastSeq() {
		if time.Now().After(deadline) {
			t.Fatal("replica did not catch up")
		}
		time.Sleep(2 * time.Millisecond)
	}
	return hs.URL
}

func runState(t *testing.T, url string, args ...string) (string, error) {
	t.Helper()
	cmd := newStateCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append(args, "--server", url))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestStateCommands(t *testing.T) {
	url := newSyncServer(t, map[string]string{"a.md": "h1", "sub/b.txt": "h2", "odd[1].md": "h3"})

	out, err := runState(t, url, "ls", "--path", "**/*.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "a.md") || !strings.Contains(out, "odd[1].md") || strings.Contains(out, "b.txt") || !strings.Contains(out, "session: laptop:") {
		t.Errorf("state ls --path '**/*.md' =\n%s", out)
	}

	out, err = runState(t, url, "get", "docs", "odd[1].md", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Path     string
		Versions []struct{ Hash, Instance string }
	}
	if err := json.Unmarshal([]byte(out), &e); err != nil || e.Path != "odd[1].md" || len(e.Versions) != 1 || e.Versions[0].Hash != "h3" || e.Versions[0].Instance != "laptop" {
		t.Errorf("state get docs odd[1].md --json = %s (%v)", out, err)
	}

	if _, err := runState(t, url, "get", "docs", "missing"); err == nil || !strings.Contains(err.Error(), "no entry") {
		t.Errorf("state get of a missing entry: %v", err)
	}
	out, err = runState(t, url, "conflicts")
	if err != nil || strings.Count(out, "\n") != 2 { // header and session only
		t.Errorf("state conflicts = %q, %v", out, err)
	}
	if _, err := runState(t, url, "ls", "--consistency", "strong"); err == nil || !strings.Contains(err.Error(), "cluster") {
		t.Errorf("state ls --consistency strong outside a cluster: %v", err)
	}
	out, err = runState(t, url, "peers")
	if err != nil || !strings.Contains(out, "name laptop, 3 entries") {
		t.Errorf("state peers = %q, %v", out, err)
	}
}
