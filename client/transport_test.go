package client_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// TestConcurrentPublishersReuseConnections: publishers sharing one Client
// keep their connections. With http.DefaultTransport's two idle
// connections per host, every request beyond the second concurrent one
// closed its connection after the answer and the next dialled a new one.
func TestConcurrentPublishersReuseConnections(t *testing.T) {
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	j, err := journal.Open(journal.Options{Dir: dir + "/journal", Fsync: journal.FsyncNever, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s := api.New(api.Options{Manager: m, Logger: quiet})
	s.SetReady(true, "")
	var conns atomic.Int32
	hs := httptest.NewUnstartedServer(s)
	hs.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	hs.Start()
	t.Cleanup(func() { s.Close(); hs.Close(); m.Close(); j.Close() })

	c := client.New(hs.URL, "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const publishers, posts = 8, 50
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for range posts {
				if _, err := c.Publish(ctx, &event.Event{Type: "t.x"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Each publisher needs one connection; a few more are fine (a
	// request may dial before another's connection is back in the pool).
	if n := conns.Load(); n > 2*publishers {
		t.Errorf("%d publishers × %d posts opened %d connections, want at most %d", publishers, posts, n, 2*publishers)
	}
}
