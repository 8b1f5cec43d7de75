package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/audit"
	"github.com/semprop/semprop/internal/guard"
)

// TestGuardAndAudit: Guard lists what the daemon's guard holds,
// GuardRelease releases it (404 after), Audit reads the trail with a
// filter.
func TestGuardAndAudit(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	g, err := guard.New(guard.Options{Config: guard.DefaultConfig(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := int32(cmd.Process.Pid)
	if err := g.Quarantine(pid, 7, false, time.Now().Add(time.Hour), "r/m/0"); err != nil {
		t.Fatal(err)
	}
	g.Refuse(pid, 7, "write")

	dir := filepath.Join(t.TempDir(), "audit")
	alog, err := audit.Open(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*audit.Record{{Kind: audit.KindIntent, Rule: "a", Key: "a/m/0"}, {Kind: audit.KindDone, Rule: "a", Key: "a/m/0"}, {Kind: audit.KindDone, Rule: "b", Key: "b/m/0"}} {
		if err := alog.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	alog.Close()

	srv := api.New(api.Options{Logger: quiet})
	g.Register(srv)
	srv.Handle("GET /v1/audit", audit.Handler(dir))
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	c := client.New(hs.URL, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	st, err := c.Guard(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Enabled || len(st.Entries) != 1 || st.Entries[0].PID != pid || st.Entries[0].Refused != 1 || st.Stats.Refused["write"] != 1 {
		t.Errorf("Guard = %+v", st)
	}
	if st, err = c.GuardRelease(ctx, pid, 0, false); err != nil || len(st.Entries) != 0 {
		t.Errorf("GuardRelease = %+v, %v", st, err)
	}
	var ce *client.Error
	if _, err := c.GuardRelease(ctx, pid, 0, false); !errors.As(err, &ce) || ce.Status != 404 {
		t.Errorf("second GuardRelease = %v, want a 404", err)
	}

	page, err := c.Audit(ctx, client.AuditFilter{Rule: "a", Kind: audit.KindDone})
	if err != nil {
		t.Fatal(err)
	}
	if page.Count != 3 || len(page.Records) != 1 || page.Records[0].Key != "a/m/0" || page.Head == "" {
		t.Errorf("Audit = %+v", page)
	}
	if page, err = c.Audit(ctx, client.AuditFilter{Limit: 2}); err != nil || len(page.Records) != 2 || page.Records[1].Rule != "b" {
		t.Errorf("Audit(limit 2) = %+v, %v", page, err)
	}
	if _, err := c.Audit(ctx, client.AuditFilter{Since: "soon"}); !errors.As(err, &ce) || ce.Status != 400 {
		t.Errorf("Audit(since soon) = %v, want a 400", err)
	}
}
