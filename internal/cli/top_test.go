package cli

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/analytics"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// TestTopOnce: `semprop top --once` prints one frame with the rates by
// type and the busiest paths, processes and users, from the daemon's
// analytics engine.
func TestTopOnce(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	j, err := journal.Open(journal.Options{Dir: dir + "/journal", Fsync: journal.FsyncInterval, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e, err := analytics.New(analytics.Config{}, analytics.Options{
		Open:   func(from uint64) (analytics.Source, error) { return m.Reader(from) },
		Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := api.New(api.Options{Manager: m, Logger: quiet})
	e.Register(s)
	s.SetReady(true, "")
	hs := httptest.NewServer(s)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := e.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() {
		hs.Close()
		s.Close()
		cancel()
		wg.Wait()
		m.Close()
		j.Close()
	})
	now := time.Now()
	var evs []*event.Event
	add := func(n int, typ, path, comm string, uid uint32, size int64) {
		for range n {
			ev := &event.Event{Type: typ, Subject: path, Time: now}
			ev.Context.Comm = comm
			ev.Context.SetUID(uid)
			if size > 0 {
				ev.Context.SetBytes(size)
			}
			evs = append(evs, ev)
		}
	}
	add(30, "fs.write", "/srv/data/big.bin", "rsync", 0, 1024)
	add(10, "fs.create", "/home/alice/notes.md", "vim", 1000, 0)
	if err := m.PublishBatch(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.Seq() < j.DurableSeq() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}

	cmd := newTopCmd()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs([]string{"--once", "--server", hs.URL})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("top --once: %v (%s)", err, errb.String())
	}
	got := squash(out.String())
	for _, want := range []string{
		"4.0 events/s", "3.0 KiB/s written",
		"fs.write 3.0 3.0 KiB", "fs.create 1.0 0 B",
		"PATH — busiest over 1m0s (40 events)", "30 75.0% 30.0 KiB /srv/data/big.bin", "10 25.0% 0 B /home/alice/notes.md",
		"PROCESS — busiest over 1m0s (40 events)", "30 75.0% 30.0 KiB rsync", "10 25.0% 0 B vim",
		"UID — busiest over 1m0s (40 events)", "30 75.0% 30.0 KiB 0", "10 25.0% 0 B 1000",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("top --once lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "\x1b[") {
		t.Errorf("top --once writes escape codes: %q", out.String())
	}
	for _, args := range [][]string{{"--once", "--window", "2h"}, {"--once", "-k", "0"}} {
		cmd := newTopCmd()
		cmd.SetOut(&out)
		cmd.SetErr(&errb)
		cmd.SetArgs(append(args, "--server", hs.URL))
		if err := cmd.Execute(); err == nil {
			t.Errorf("top %v: no error", args)
		}
	}
}
