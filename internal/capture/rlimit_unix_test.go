//go:build unix

package capture

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// setNofile sets RLIMIT_NOFILE for the rest of the test and restores the
// limit it found at cleanup.
func setNofile(t *testing.T, cur, max uint64) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
			t.Errorf("restore RLIMIT_NOFILE: %v", err)
		}
	})
	lim := syscall.Rlimit{Cur: cur, Max: max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("setrlimit nofile %d/%d: %v", cur, max, err)
	}
}

func nofile(t *testing.T) syscall.Rlimit {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	return lim
}

func TestRaiseFileLimit(t *testing.T) {
	hard := uint64(nofile(t).Max)
	if hard < 2048 {
		t.Skipf("skipping: hard RLIMIT_NOFILE %d is too low to lower the soft limit under it", hard)
	}
	setNofile(t, 1024, hard)
	var logs bytes.Buffer
	before, after, err := RaiseFileLimit(slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("RaiseFileLimit: %v", err)
	}
	if before != 1024 || after != hard {
		t.Errorf("RaiseFileLimit = %d, %d; want 1024, %d", before, after, hard)
	}
	if got := nofile(t); uint64(got.Cur) != hard || uint64(got.Max) != hard {
		t.Errorf("RLIMIT_NOFILE now %d/%d, want %d/%d", got.Cur, got.Max, hard, hard)
	}
	if !strings.Contains(logs.String(), "msg=\"file descriptor limit\"") || !strings.Contains(logs.String(), "was=1024") {
		t.Errorf("log %q: want the limit and what it was", logs.String())
	}
	if hard >= lowFileLimit && strings.Contains(logs.String(), "WARN") {
		t.Errorf("log %q: a warning for a limit of %d", logs.String(), hard)
	}

	// Already at the hard limit: nothing changes.
	before, after, err = RaiseFileLimit(nil)
	if err != nil || before != hard || after != hard {
		t.Errorf("RaiseFileLimit again = %d, %d, %v; want %d, %d, nil", before, after, err, hard, hard)
	}
}

// lowLimitChild makes the test binary lower its own descriptor limits and
// call RaiseFileLimit (see TestRaiseFileLimitLow).
const lowLimitChild = "SEMPROP_RLIMIT_CHILD"

// TestRaiseFileLimitLow checks the warning about a limit that clients can
// use up. Lowering the hard limit cannot be undone without privilege, so a
// child process (this test binary again) does it.
func TestRaiseFileLimitLow(t *testing.T) {
	if os.Getenv(lowLimitChild) != "" {
		lim := syscall.Rlimit{Cur: 512, Max: 1024}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatalf("setrlimit: %v", err)
		}
		before, after, err := RaiseFileLimit(slog.New(slog.NewTextHandler(os.Stdout, nil)))
		if err != nil || before != 512 || after != 1024 {
			t.Fatalf("RaiseFileLimit = %d, %d, %v; want 512, 1024, nil", before, after, err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestRaiseFileLimitLow$", "-test.v")
	cmd.Env = append(os.Environ(), lowLimitChild+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "level=WARN") || !strings.Contains(string(out), "limit=1024") {
		t.Errorf("child's log %q: want a warning about the low limit", out)
	}
}
