package daemon

import (
	"io"
	"log/slog"
	"runtime/debug"
	"testing"
)

// TestDaemonGC: a daemon raises the collector's target whatever it serves
// (HTTP ingest allocates as a mount does), unless GOGC is set.
func TestDaemonGC(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })

	t.Setenv("GOGC", "")
	tuneProcess(&Config{}, log) // no mounts, no watches
	if got := debug.SetGCPercent(100); got != daemonGCPercent {
		t.Fatalf("GC percent after tuneProcess without mounts = %d, want %d", got, daemonGCPercent)
	}

	t.Setenv("GOGC", "50")
	if daemonGC(log) {
		t.Fatalf("daemonGC changed the target with GOGC set")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GC percent with GOGC set = %d, want it left at 100", got)
	}
}
