package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/monitor"
	"github.com/semprop/semprop/internal/propagate"
)

// alertsServer runs an API server with a monitor on 127.0.0.1 and one
// alert posted to it.
func alertsServer(t *testing.T) string {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: journal.FsyncInterval, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	h := monitor.NewHealth()
	h.Register("journal", "journal", monitor.NewChecks(monitor.HealthConfig{}).Journal(j))
	mon, err := monitor.New(monitor.Config{}, monitor.Options{Logger: quiet, Health: h})
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Post([]monitor.PostableAlert{{Labels: map[string]string{"alertname": "Test", "tree": "/srv/a"}, Annotations: map[string]string{"summary": "a test"}}}); err != nil {
		t.Fatal(err)
	}
	mon.Evaluate(context.Background(), time.Now())
	srv := api.New(api.Options{Manager: m, Logger: quiet, Health: h.Ready})
	mon.Register(srv)
	srv.SetReady(true, "")
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		m.Close()
		j.Close()
	})
	return hs.URL
}

func runCmd(t *testing.T, cmd *cobra.Command, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestAlertsCommands(t *testing.T) {
	url := alertsServer(t)
	out, err := runCmd(t, newAlertsCmd(), "ls", "--server", url)
	if err != nil || !strings.Contains(out, "Test") || !strings.Contains(out, "firing") || !strings.Contains(out, "tree=/srv/a") || !strings.Contains(out, "a test") {
		t.Fatalf("alerts ls: %v\n%s", err, out)
	}
	out, err = runCmd(t, newAlertsCmd(), "silence", "alertname=Test", "tree=/srv/a", "--for", "2h", "--comment", "testing", "--server", url)
	if err != nil {
		t.Fatalf("alerts silence: %v\n%s", err, out)
	}
	id := strings.Fields(out)[0]
	out, err = runCmd(t, newAlertsCmd(), "ls", "--json", "--server", url)
	var got struct {
		Alerts []struct {
			SilencedBy []string `json:"silenced_by"`
		} `json:"alerts"`
		Silences []struct {
			ID       string   `json:"id"`
			Matchers []string `json:"matchers"`
		} `json:"silences"`
	}
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || len(got.Alerts) != 1 || len(got.Alerts[0].SilencedBy) != 1 || got.Alerts[0].SilencedBy[0] != id {
		t.Fatalf("alerts ls --json after silencing: %v\n%s", err, out)
	}
	if m := got.Silences[0].Matchers; len(m) != 2 || m[1] != `tree="/srv/a"` {
		t.Errorf("matchers = %q, want the bare value quoted", m)
	}
	if out, err := runCmd(t, newAlertsCmd(), "unsilence", id, "--server", url); err != nil || !strings.Contains(out, "expired "+id) {
		t.Fatalf("alerts unsilence: %v\n%s", err, out)
	}
	if _, err := runCmd(t, newAlertsCmd(), "unsilence", "nosuch", "--server", url); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unsilence nosuch = %v, want a 404", err)
	}
	if _, err := runCmd(t, newAlertsCmd(), "silence", "bad matcher", "--server", url); err == nil {
		t.Error("silence with a bad matcher succeeded")
	}
	if _, err := runCmd(t, newAlertsCmd(), "ls", "--state", "nope", "--server", url); err == nil {
		t.Error("ls --state nope succeeded")
	}
	out, err = runCmd(t, newHealthCmd(), "--server", url)
	if err != nil || !strings.Contains(out, "journal") {
		t.Errorf("health: %v\n%s", err, out)
	}
}
