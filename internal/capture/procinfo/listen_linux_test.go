package procinfo

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func startCache(t *testing.T) *Cache {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the process connector needs root")
	}
	c, err := Start(context.Background(), nil)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestStartExec learns a short-lived process from its exec and answers for
// it after it exited, when /proc no longer can.
func TestStartExec(t *testing.T) {
	c := startCache(t)
	before := Now()
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := int32(cmd.Process.Pid)
	after := Now()
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid))); err == nil {
		t.Fatalf("process still in /proc")
	}
	id, ok := c.Lookup(pid, Window{NotBefore: before, NotAfter: after})
	exe, _ := filepath.EvalSymlinks("/bin/true")
	if !ok || id.Comm != "true" || id.Exe != exe || id.PID != pid || !id.HasIDs || id.UID != 0 {
		t.Errorf("Lookup(%d) = %+v, %v; want comm true, exe %s", pid, id, ok, exe)
	}
	// A window after the exit holds no process: no answer.
	later := Now()
	if id, ok := c.Lookup(pid, Window{NotBefore: later, NotAfter: later + 1}); ok {
		t.Errorf("Lookup after exit = %+v, want no answer", id)
	}
}

// TestStartSelfThread answers for this process and one of its threads
// (which existed before the cache).
func TestStartSelfThread(t *testing.T) {
	c := startCache(t)
	id, ok := c.LookupThread(int32(os.Getpid()))
	exe, _ := os.Executable()
	if !ok || id.PID != int32(os.Getpid()) || id.Exe != exe {
		t.Errorf("LookupThread(self) = %+v, %v; want pid %d exe %s", id, ok, os.Getpid(), exe)
	}
	if c.Stats().ProcReads == 0 {
		t.Errorf("ProcReads = 0, want the older process read from /proc")
	}
}

func TestCloseStops(t *testing.T) {
	c := startCache(t)
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	c.Close()
	// Lookups still work, from /proc.
	if _, ok := c.LookupThread(int32(os.Getpid())); !ok {
		t.Errorf("LookupThread after Close failed")
	}
}

// BenchmarkLookupListener is a lookup with the listener running, for a
// window that ends now: the cache checks (one poll) that the listener has
// nothing pending. The kernel boundary pays this once per batch read.
func BenchmarkLookupListener(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("the process connector needs root")
	}
	c, err := Start(context.Background(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	pid := int32(os.Getpid())
	b.ReportAllocs()
	for b.Loop() {
		now := Now()
		if _, ok := c.Lookup(pid, Window{NotBefore: now - 1, NotAfter: now}); !ok {
			b.Fatal("miss")
		}
	}
}

// BenchmarkReadExec is what the listener spends on each exec: reading
// /proc/PID/{exe,stat,status}.
func BenchmarkReadExec(b *testing.B) {
	p := procfs{root: "/proc"}
	pid := int32(os.Getpid())
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := p.readExec(pid); !ok {
			b.Fatal("read failed")
		}
	}
}
