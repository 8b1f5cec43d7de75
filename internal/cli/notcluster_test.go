package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/config"
	"github.com/semprop/semprop/internal/daemon"
)

// TestClusterStatusNotInCluster: cluster commands against a daemon that
// runs alone say so, instead of "404 no route".
func TestClusterStatusNotInCluster(t *testing.T) {
	c, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	c.Data, c.Listen = filepath.Join(t.TempDir(), "data"), "127.0.0.1:0"
	cfg, err := daemon.FromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	d := daemon.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-d.Started():
	case <-time.After(10 * time.Second):
		t.Fatal("daemon not started")
	}
	var out, errb bytes.Buffer
	code := Main([]string{"cluster", "status", "--server", "http://" + d.Addr()}, nil, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "is not in a cluster") {
		t.Errorf("cluster status against a lone daemon: exit %d, stderr %q", code, errb.String())
	}
}
