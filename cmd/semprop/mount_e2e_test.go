package main_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
)

// requireMount skips unless this process may mount FUSE file systems.
func requireMount(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs /dev/fuse: %v", err)
	}
}

// cleanupMount detaches whatever is left at mnt when the test ends.
func cleanupMount(t *testing.T, mnt string) {
	t.Cleanup(func() {
		for range 4 {
			if unix.Unmount(mnt, unix.MNT_DETACH) != nil {
				return
			}
		}
	})
}

// waitSubject waits until the daemon's journal holds an event for subject.
func waitSubject(t *testing.T, d *daemon, subject string) {
	t.Helper()
	c := client.New(d.url, "")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		found := false
		_, _ = c.Replay(ctx, client.Selector{}, 0, 100000, func(ev *event.Event) error {
			found = found || ev.Subject == subject
			return nil
		})
		cancel()
		if found {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no event for %s within 10s; logs:\n%s", subject, d.logs)
}

// runRefused runs `semprop run` with args and requires it to exit non-zero
// within 20s; it returns the output.
func runRefused(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, append([]string{"run", "--listen", freeAddr(t)}, args...)...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("semprop run %v: %v, want a refusal (exit non-zero); output:\n%s", args, err, out)
	}
	return string(out)
}

var passthroughModes = []string{"on", "off"}

// TestSecondDaemonSameMountpoint: a second daemon on a live mount point is
// refused with the first one's pid, and the first keeps capturing.
func TestSecondDaemonSameMountpoint(t *testing.T) {
	requireMount(t)
	for _, pt := range passthroughModes {
		t.Run("passthrough="+pt, func(t *testing.T) {
			root := t.TempDir()
			backing, backing2, mnt := filepath.Join(root, "b"), filepath.Join(root, "b2"), filepath.Join(root, "m")
			for _, d := range []string{backing, backing2, mnt} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cleanupMount(t, mnt)
			first := startDaemon(t, filepath.Join(root, "d1"), "--mount", backing+":"+mnt, "--fuse-passthrough", pt)
			out := runRefused(t, "--data", filepath.Join(root, "d2"), "--mount", backing2+":"+mnt, "--fuse-passthrough", pt)
			want := fmt.Sprintf("served by pid %d", first.cmd.Process.Pid)
			if !strings.Contains(out, "mount point busy") || !strings.Contains(out, want) {
				t.Errorf("second daemon's refusal does not say %q:\n%s", want, out)
			}
			if _, err := os.Stat(filepath.Join(root, "d2")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the refused daemon left its data directory behind (%v)", err)
			}
			f := filepath.Join(mnt, "after-refusal")
			if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(backing, "after-refusal")); err != nil {
				t.Errorf("a write into the mount point did not reach the first daemon's backing tree: %v", err)
			}
			waitSubject(t, first, f)
			first.stop(t)
		})
	}
}

// TestKillRestartMount: after SIGKILL the dead mount is cleared and a
// restarted daemon captures again, cycle after cycle.
func TestKillRestartMount(t *testing.T) {
	requireMount(t)
	cycles := 20
	if testing.Short() {
		cycles = 3
	}
	for _, pt := range passthroughModes {
		t.Run("passthrough="+pt, func(t *testing.T) {
			root := t.TempDir()
			backing, mnt, data := filepath.Join(root, "b"), filepath.Join(root, "m"), filepath.Join(root, "d")
			if err := os.Mkdir(backing, 0o755); err != nil {
				t.Fatal(err)
			}
			cleanupMount(t, mnt) // created by the first start
			for i := range cycles {
				d := startDaemon(t, data, "--mount", backing+":"+mnt, "--fuse-passthrough", pt)
				f := filepath.Join(mnt, fmt.Sprintf("cycle-%d", i))
				if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
					t.Fatalf("cycle %d: write into the mount: %v; logs:\n%s", i, err, d.logs)
				}
				waitSubject(t, d, f)
				if i > 0 && !strings.Contains(d.logs.String(), "clearing stale") {
					t.Errorf("cycle %d: no log line about clearing the dead mount; logs:\n%s", i, d.logs)
				}
				if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				_ = d.cmd.Wait()
			}
		})
	}
}

// listing is every path under root with its mode, for before/after
// comparisons.
func listing(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		out = append(out, strings.TrimPrefix(p, root)+" "+d.Type().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestRefusedStartsLeaveNothing: every start refused for a bad argument
// leaves the file system exactly as it found it.
func TestRefusedStartsLeaveNothing(t *testing.T) {
	requireMount(t)
	root := t.TempDir()
	for _, d := range []string{"watched", "backing", "mnt"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := func(s string) string { return filepath.Join(root, s) }
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing watch dir", []string{"--data", p("data"), "--watch", p("nope")}, "--watch"},
		{"watch is a file", []string{"--data", p("data"), "--watch", p("file")}, "not a directory"},
		{"data inside the watched tree", []string{"--data", p("watched/semprop-data"), "--watch", p("watched")}, "inside"},
		{"missing backing", []string{"--data", p("data"), "--mount", p("nope") + ":" + p("mnt2")}, "--mount"},
		{"mount point inside the backing tree", []string{"--data", p("data"), "--mount", p("backing") + ":" + p("backing/m")}, "contain each other"},
		{"backing inside the mount point", []string{"--data", p("data"), "--mount", p("mnt/x") + ":" + p("mnt")}, "--mount"},
		{"data inside the backing tree", []string{"--data", p("backing/d"), "--mount", p("backing") + ":" + p("mnt3")}, "inside"},
		{"malformed listen", []string{"--data", p("data"), "--listen", "nonsense"}, "malformed"},
		{"unknown fsync", []string{"--data", p("data"), "--fsync", "sometimes"}, "fsync"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := listing(t, root)
			out := runRefused(t, tt.args...)
			if !strings.Contains(out, tt.want) {
				t.Errorf("refusal does not mention %q:\n%s", tt.want, out)
			}
			if after := listing(t, root); !slices.Equal(before, after) {
				t.Errorf("a refused start changed the file system:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}
