package ui

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/analytics"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/auth"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

var quiet = slog.New(slog.DiscardHandler)

// env is a daemon in miniature: journal, manager, API server and the UI,
// served on 127.0.0.1.
type env struct {
	url string
	m   *propagate.Manager
	api *api.Server
	ui  *UI
}

// withAnalytics, as newEnv's last argument, runs the analytics engine on
// the env's journal and serves its routes, as the daemon does.
const withAnalytics = true

func newEnv(t testing.TB, tokens []auth.TokenSpec, cfg Config, analyticsOn ...bool) *env {
	t.Helper()
	dir := t.TempDir()
	j, err := journal.Open(journal.Options{Dir: dir + "/journal", Fsync: journal.FsyncInterval, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Source: "semprop://test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(tokens)
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Options{Manager: m, Logger: quiet, Auth: a, Heartbeat: time.Second})
	u, err := New(Options{Config: cfg, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	u.Register(srv)
	stopExtra := func() {}
	if len(analyticsOn) > 0 && analyticsOn[0] {
		stopExtra = runAnalytics(t, dir, m, srv, a, tokens)
	}
	srv.SetReady(true, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.Listener.Close()
	hs.Listener = ln
	hs.Start()
	t.Cleanup(func() {
		srv.Close()
		hs.CloseClientConnections() // the browser may still hold streams
		hs.Close()
		stopExtra()
		m.Close()
		j.Close()
	})
	return &env{url: hs.URL, m: m, api: srv, ui: u}
}

// runAnalytics starts the analytics engine as the daemon wires it: fed
// from the manager's durable stream, one view per token, its routes on
// srv. It returns a func that stops it and waits.
func runAnalytics(t testing.TB, dir string, m *propagate.Manager, srv *api.Server, a *auth.Authenticator, tokens []auth.TokenSpec) func() {
	t.Helper()
	var principals []*auth.Principal
	for _, ts := range tokens {
		if strings.HasPrefix(ts.Name, "late-") {
			continue // as if added after the engine started: no view of its own
		}
		if p, ok := a.Lookup(ts.Name); ok {
			principals = append(principals, p)
		}
	}
	eng, err := analytics.New(analytics.Config{}, analytics.Options{
		Dir:        dir + "/analytics",
		Open:       func(from uint64) (analytics.Source, error) { return m.Reader(from) },
		Publisher:  m,
		Source:     "semprop://test/analytics",
		Principals: principals,
		Logger:     quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	eng.Register(srv)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = eng.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// publish publishes n fs.write events in one batch under dir, with the
// given ids' prefix; it returns the events (with seqs set).
func (e *env) publish(t testing.TB, n int, prefix, dir string) []*event.Event {
	t.Helper()
	evs := make([]*event.Event, n)
	for i := range evs {
		ev := &event.Event{Type: "fs.write", Subject: fmt.Sprintf("%s/f%03d.txt", dir, i%97), SourceID: fmt.Sprintf("%s-%d", prefix, i)}
		ev.Context.Comm = []string{"rsync", "vim", "cp"}[i%3]
		ev.Context.SetUID(uint32(1000 + i%2))
		ev.Context.SetBytes(int64(4096 * (1 + i%4)))
		evs[i] = ev
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.m.PublishBatch(ctx, evs); err != nil {
		t.Fatal(err)
	}
	return evs
}

// get fetches url with an optional bearer token.
func get(t testing.TB, url, token string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
