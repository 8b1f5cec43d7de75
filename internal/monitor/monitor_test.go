package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

var quiet = slog.New(slog.DiscardHandler)

type recorder struct {
	mu     sync.Mutex
	bodies map[string][][]byte // by path
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	if r.bodies == nil {
		r.bodies = map[string][][]byte{}
	}
	r.bodies[req.URL.Path] = append(r.bodies[req.URL.Path], b)
	r.mu.Unlock()
}

func (r *recorder) wait(t *testing.T, path string, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		got := r.bodies[path]
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: fewer than %d requests within 10s", path, n)
	return nil
}

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time                { return time.Unix(0, c.ns.Load()) }
func (c *clock) set(t time.Time)               { c.ns.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration) time.Time { c.ns.Add(int64(d)); return c.now() }

type env struct {
	dir string
	j   *journal.Journal
	m   *propagate.Manager
	reg *prometheus.Registry
	h   *Health
	srv *api.Server
	hs  *httptest.Server
	c   *client.Client
}

// newEnv builds a journal, a manager, a registry with their collectors, a
// Health with the journal, disk and subscription checks, and an API
// server on 127.0.0.1.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{dir: t.TempDir()}
	var err error
	e.j, err = journal.Open(journal.Options{Dir: filepath.Join(e.dir, "journal"), Fsync: journal.FsyncInterval, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e.m, err = propagate.New(propagate.Options{Journal: e.j, Dir: e.dir, Source: "semprop://test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e.reg = prometheus.NewRegistry()
	e.reg.MustRegister(e.j.Collector(), e.m.Collector())
	e.h = NewHealth()
	ch := NewChecks(HealthConfig{})
	e.h.Register("journal", "journal", ch.Journal(e.j))
	e.h.Register("disk", "disk", ch.Disk(e.dir))
	e.h.Register("subscriptions", "consumers", ch.Subscriptions(e.m))
	e.reg.MustRegister(e.h.Collector())
	e.srv = api.New(api.Options{Manager: e.m, Logger: quiet, Health: e.h.Ready, Registerer: e.reg})
	e.hs = httptest.NewServer(e.srv)
	e.c = client.New(e.hs.URL, "")
	t.Cleanup(func() {
		e.srv.Close()
		e.hs.Close()
		e.m.Close()
		e.j.Close()
	})
	return e
}

func TestMonitorEndToEnd(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	hook, am := &recorder{}, &recorder{}
	hookSrv, amSrv := httptest.NewServer(hook), httptest.NewServer(am)
	t.Cleanup(hookSrv.Close)
	t.Cleanup(amSrv.Close)

	rules := filepath.Join(e.dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte(`
rules:
  - alert: ManyEvents
    expr: semprop_published_events_total > 2
    labels: {severity: warning}
    annotations: {summary: "{{ $value }} events published"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	off := false
	cfg := Config{DefaultRules: &off, RuleFiles: []string{rules}, Interval: Duration(time.Hour),
		Webhooks: []WebhookConfig{{URL: hookSrv.URL + "/hook"}}, Alertmanagers: []AlertmanagerConfig{{URL: amSrv.URL}},
		ExternalURL: "http://semprop.test:7878"}
	var clk clock
	clk.set(t0)
	mon, err := New(cfg, Options{Logger: quiet, Gatherer: e.reg, Publisher: e.m, Health: e.h, DataDir: e.dir, StateDir: filepath.Join(e.dir, "monitor"), Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	e.reg.MustRegister(mon.Collector())
	mon.Register(e.srv)
	e.srv.SetReady(true, "")
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mon.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})

	for range 3 {
		if _, err := e.m.Publish(ctx, &event.Event{Type: "app.test", Source: "semprop://test"}); err != nil {
			t.Fatal(err)
		}
	}
	mon.deliver(mon.Step(ctx, clk.add(15*time.Second)))
	// group_wait (30s) holds the first notification back.
	if as, _, err := e.c.Alerts(ctx, "firing"); err != nil || len(as) != 1 {
		t.Fatalf("Alerts(firing) = %v, %v; want ManyEvents", as, err)
	}
	mon.deliver(mon.Step(ctx, clk.add(31*time.Second)))

	var msg WebhookMessage
	if err := json.Unmarshal(hook.wait(t, "/hook", 1)[0], &msg); err != nil {
		t.Fatal(err)
	}
	if msg.Status != "firing" || len(msg.Alerts) != 1 || msg.Alerts[0].Labels["alertname"] != "ManyEvents" || msg.Alerts[0].Annotations["summary"] != "3 events published" {
		t.Errorf("webhook message = %+v", msg)
	}
	validateAlertmanagerBody(t, am.wait(t, "/api/v2/alerts", 1)[0])

	// The alert is in the stream as an event.
	rd, err := e.m.Reader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	found := false
	for !found {
		var ev event.Event
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		err := rd.Next(rctx, &ev)
		rcancel()
		if err != nil {
			t.Fatalf("no %s event in the journal: %v", TypeFiring, err)
		}
		if ev.Type == TypeFiring {
			found = true
			if sev, _ := ev.Attr("severity"); ev.Subject != "ManyEvents" || sev != "warning" {
				t.Errorf("alert event = %+v", ev)
			}
		}
	}

	// Silence it through the API, see it muted, unsilence it.
	s, err := e.c.Silence(ctx, client.Silence{Matchers: []string{`alertname="ManyEvents"`}, Comment: "test"}, time.Hour)
	if err != nil || s.ID == "" {
		t.Fatalf("Silence = %+v, %v", s, err)
	}
	as, ss, err := e.c.Alerts(ctx, "")
	if err != nil || len(as) != 1 || len(as[0].SilencedBy) != 1 || as[0].SilencedBy[0] != s.ID || len(ss) != 1 {
		t.Fatalf("Alerts after silencing = %+v, %+v, %v", as, ss, err)
	}
	// The silence survives a restart.
	mon2, err := New(cfg, Options{Logger: quiet, StateDir: filepath.Join(e.dir, "monitor"), Now: clk.now})
	if err != nil || len(mon2.Silences()) != 1 || mon2.Silences()[0].ID != s.ID {
		t.Fatalf("silences after a restart = %+v, %v", mon2.Silences(), err)
	}
	if err := e.c.Unsilence(ctx, s.ID); err != nil {
		t.Fatalf("Unsilence = %v", err)
	}
	as, _, _ = e.c.Alerts(ctx, "")
	if len(as) != 1 || len(as[0].SilencedBy) != 0 {
		t.Errorf("Alerts after unsilencing = %+v", as)
	}
	var ce *client.Error
	if err := e.c.Unsilence(ctx, "nosuch"); !errors.As(err, &ce) || ce.Status != http.StatusNotFound {
		t.Errorf("Unsilence(nosuch) = %v, want 404", err)
	}
	if _, err := e.c.Silence(ctx, client.Silence{Matchers: []string{`alertname=~"("`}}, time.Hour); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
		t.Errorf("Silence(bad matcher) = %v, want 400", err)
	}

	// Alerts from outside, in Alertmanager's format.
	if err := e.c.PostAlerts(ctx, []client.Alert{{Labels: map[string]string{"alertname": "External", "team": "x"}}}); err != nil {
		t.Fatalf("PostAlerts = %v", err)
	}
	if err := e.c.PostAlerts(ctx, []client.Alert{{Labels: map[string]string{"team": "x"}}}); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
		t.Errorf("PostAlerts(no alertname) = %v, want 400", err)
	}
	if as, _, _ := e.c.Alerts(ctx, "firing"); len(as) != 2 {
		t.Errorf("firing alerts after a post = %d, want 2", len(as))
	}

	// Health: every check (a slow disk may make the journal degraded);
	// /readyz ready.
	h, err := e.c.Health(ctx)
	if err != nil || h.Status == "failing" || len(h.Checks) != 3 {
		t.Fatalf("Health = %+v, %v", h, err)
	}
	if _, err := e.c.Ready(ctx); err != nil {
		t.Errorf("Ready = %v", err)
	}
	// The monitor's metrics are in the registry.
	fams, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range fams {
		have[f.GetName()] = true
	}
	for _, n := range []string{"semprop_health_status", "semprop_alerts", "semprop_alert_rule_evaluations_total", "semprop_alert_notifications_total", "semprop_data_disk_free_bytes"} {
		if !have[n] {
			t.Errorf("metric %s missing from the registry", n)
		}
	}
}

// TestReadyFailsWithTheJournal: a closed journal makes its check fail,
// /readyz answer 503 and GET /v1/health report failing.
func TestReadyFailsWithTheJournal(t *testing.T) {
	e := newEnv(t)
	mon, err := New(Config{}, Options{Logger: quiet, Health: e.h})
	if err != nil {
		t.Fatal(err)
	}
	mon.Register(e.srv)
	e.srv.SetReady(true, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.h.Ready(); err != nil {
		t.Fatalf("Ready before = %v", err)
	}
	e.j.Close()
	if err := e.h.Ready(); !errors.Is(err, ErrNotReady) {
		t.Errorf("Ready after closing the journal = %v, want ErrNotReady", err)
	}
	resp, err := http.Get(e.hs.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d, want 503", resp.StatusCode)
	}
	h, err := e.c.Health(ctx)
	if err != nil || h.Status != "failing" || h.Counts["failing"] != 1 {
		t.Errorf("Health = %+v, %v; want failing", h, err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Interval: -1},
		{Webhooks: []WebhookConfig{{URL: "ftp://x"}}},
		{Alertmanagers: []AlertmanagerConfig{{URL: "x"}}},
		{Route: RouteConfig{GroupBy: []string{"bad-label"}}},
		{InhibitRules: []InhibitRule{{SourceMatchers: []string{`a="b"`}}}},
		{Health: HealthConfig{DiskFreeDegraded: 2}},
		{Health: HealthConfig{DiskFreeDegraded: 0.01, DiskFreeFailing: 0.5}},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("Validate(zero) = %v", err)
	}
}
