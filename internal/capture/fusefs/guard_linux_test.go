package fusefs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeGuard refuses every caller with uid while on, and records what it
// was asked to preserve, with the file's content at that moment.
type fakeGuard struct {
	on       atomic.Bool
	uid      uint32
	preserve bool

	mu        sync.Mutex
	asked     []string // "op uid"
	preserved []string // "op path newSize content"
}

func (g *fakeGuard) Active() bool { return g.on.Load() }

func (g *fakeGuard) Refuse(pid int32, uid uint32, op string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked = append(g.asked, fmt.Sprintf("%s %d", op, uid))
	return uid == g.uid && pid > 0
}

func (g *fakeGuard) Preserving() bool { return g.preserve }

func (g *fakeGuard) Preserve(backing, path, op string, newSize int64) {
	data, err := os.ReadFile(backing)
	if err != nil {
		data = []byte("<" + err.Error() + ">")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.preserved = append(g.preserved, fmt.Sprintf("%s %s %d %s", op, filepath.Base(path), newSize, data))
}

// guardedOut is what guardedOps found, printed by the helper after the
// "pid tid" line.
var guardedOut strings.Builder

// guardedOps tries every mutating operation, and reads, in dir and notes
// one line per step in guardedOut: "name OK" or "name ERRNO-NAME".
func guardedOps(dir string) error {
	p := func(s string) string { return filepath.Join(dir, s) }
	buf := make([]byte, 16)
	steps := []struct {
		name string
		do   func() error
	}{
		{"read", func() error { _, err := os.ReadFile(p("f")); return err }},
		{"readdir", func() error { _, err := os.ReadDir(dir); return err }},
		{"open-rdonly", func() error {
			fd, err := unix.Open(p("f"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				_, err = unix.Read(fd, buf)
				unix.Close(fd)
			}
			return err
		}},
		{"create", func() error { return os.WriteFile(p("new"), []byte("x"), 0o666) }},
		{"mkdir", func() error { return unix.Mkdir(p("newdir"), 0o777) }},
		{"mknod", func() error { return unix.Mkfifo(p("fifo"), 0o666) }},
		{"symlink", func() error { return unix.Symlink("f", p("sym")) }},
		{"link", func() error { return unix.Link(p("f"), p("hard")) }},
		{"unlink", func() error { return unix.Unlink(p("f")) }},
		{"rmdir", func() error { return unix.Rmdir(p("d")) }},
		{"rename", func() error { return unix.Rename(p("f"), p("g")) }},
		{"truncate", func() error { return unix.Truncate(p("f"), 1) }},
		{"chmod", func() error { return unix.Chmod(p("f"), 0o600) }},
		{"utimes", func() error { return unix.UtimesNano(p("f"), []unix.Timespec{{Sec: 1}, {Sec: 1}}) }},
		{"open-wronly", func() error {
			fd, err := unix.Open(p("f"), unix.O_WRONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}},
		{"open-trunc", func() error {
			fd, err := unix.Open(p("f"), unix.O_RDONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}},
		{"setxattr", func() error { return unix.Setxattr(p("f"), "user.k", []byte("v"), 0) }},
		{"removexattr", func() error { return unix.Removexattr(p("x"), "user.k") }},
	}
	for _, s := range steps {
		err := s.do()
		var en unix.Errno
		switch {
		case err == nil:
			fmt.Fprintln(&guardedOut, s.name, "OK")
		case errors.As(err, &en):
			fmt.Fprintln(&guardedOut, s.name, unix.ErrnoName(en))
		default:
			fmt.Fprintln(&guardedOut, s.name, err)
		}
	}
	return nil
}

// guardTree makes the backing tree guardedOps works on, writable by
// everybody and its files owned by uid 4242, so that only the guard can
// refuse.
func guardTree(t *testing.T, backing string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(backing, 0o777))
	for _, f := range []string{"f", "x"} {
		must(os.WriteFile(filepath.Join(backing, f), []byte("content of "+f), 0o666))
		must(os.Chmod(filepath.Join(backing, f), 0o666))
		must(os.Chown(filepath.Join(backing, f), 4242, 4242)) // so the kernel lets chmod and utimes through
	}
	must(unix.Setxattr(filepath.Join(backing, "x"), "user.k", []byte("v"), 0))
	must(os.Mkdir(filepath.Join(backing, "d"), 0o777))
	must(os.Chmod(filepath.Join(backing, "d"), 0o777))
}

func treeListing(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, _ := d.Info()
		data, _ := os.ReadFile(p)
		out = append(out, fmt.Sprintf("%s %v %s", strings.TrimPrefix(p, dir), fi.Mode(), data))
		return nil
	})
	return strings.Join(out, "\n")
}

// TestGuardRefuses: while the guard lists the caller, every mutating
// operation through the mount fails with EPERM and changes nothing on the
// backing tree; reads work. A caller the guard does not list (another
// uid), or any caller while nobody is listed, is served normally.
func TestGuardRefuses(t *testing.T) {
	requireFUSE(t)
	for _, mode := range passthroughModes {
		t.Run(mode.name, func(t *testing.T) {
			g := &fakeGuard{uid: 4242}
			g.on.Store(true)
			backing, mnt := openDirs(t)
			guardTree(t, backing)
			before := treeListing(t, backing)
			f := mountT(t, Options{Backing: backing, Mountpoint: mnt, Sink: &recorder{}, Passthrough: mode.on, Guard: g})
			c := runChild(t, "guarded", f.Mountpoint(), 4242, 4242)
			lines := strings.Split(strings.TrimSpace(c.out), "\n")[1:]
			reads := []string{"read", "readdir", "open-rdonly"}
			for _, l := range lines {
				name, res, _ := strings.Cut(l, " ")
				want := "EPERM"
				if slices.Contains(reads, name) {
					want = "OK"
				}
				if res != want {
					t.Errorf("%s as a listed caller: %s, want %s", name, res, want)
				}
			}
			if len(lines) != 18 {
				t.Errorf("%d steps reported, want 18:\n%s", len(lines), c.out)
			}
			if after := treeListing(t, backing); after != before {
				t.Errorf("backing tree changed by a refused caller:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if got := f.Stats().Refused; got != 15 {
				t.Errorf("Stats().Refused = %d, want 15", got)
			}

			// Another uid is not listed: its operations go through.
			c = runChild(t, "guarded", f.Mountpoint(), 4243, 4243)
			if !strings.Contains(c.out, "create OK") || !strings.Contains(c.out, "mkdir OK") {
				t.Errorf("unlisted caller refused:\n%s", c.out)
			}
		})
	}
}

// TestGuardInactive: while nobody is listed the guard is asked nothing
// but Active: no process lookup, no Refuse call.
func TestGuardInactive(t *testing.T) {
	requireFUSE(t)
	g := &fakeGuard{uid: 4242}
	backing, mnt := openDirs(t)
	guardTree(t, backing)
	f := mountT(t, Options{Backing: backing, Mountpoint: mnt, Sink: &recorder{}, Guard: g})
	c := runChild(t, "guarded", f.Mountpoint(), 4242, 4242)
	if strings.Contains(c.out, "EPERM") {
		t.Errorf("refused with nobody listed:\n%s", c.out)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.asked) != 0 {
		t.Errorf("Refuse called %d times with nobody listed: %v", len(g.asked), g.asked)
	}
}

// TestGuardPreserve: before an unlink, a rename over a file, a truncate
// and an open with O_TRUNC, the guard is handed the file while it still
// has its content; a rename to a new name and a truncate through a
// growing size are handed too (the guard decides), a create is not.
func TestGuardPreserve(t *testing.T) {
	requireFUSE(t)
	for _, mode := range passthroughModes {
		t.Run(mode.name, func(t *testing.T) {
			g := &fakeGuard{preserve: true}
			backing := t.TempDir()
			for _, n := range []string{"a", "b", "c", "d", "e"} {
				if err := os.WriteFile(filepath.Join(backing, n), []byte("old "+n), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f := mountT(t, Options{Backing: backing, Sink: &recorder{}, Passthrough: mode.on, Guard: g})
			m := f.Mountpoint()
			sh(t, fmt.Sprintf(`cd %s && rm a && mv b c && truncate -s 2 d && echo new > e && echo n > fresh`, m))
			g.mu.Lock()
			got := slices.Clone(g.preserved)
			g.mu.Unlock()
			want := []string{"unlink a -1 old a", "rename c -1 old c", "setattr d 2 old d", "open e 0 old e"}
			if !slices.Equal(got, want) {
				t.Errorf("preserved:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// heldWrite opens dir/f for writing, says "opened", waits for a line on
// stdin, then writes through the descriptor it held all along and says
// "write OK" or "write ERRNO".
func heldWrite(dir string) error {
	fd, err := unix.Open(filepath.Join(dir, "f"), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	fmt.Println("opened")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	_, err = unix.Write(fd, []byte("encrypted"))
	var en unix.Errno
	switch {
	case err == nil:
		fmt.Println("write OK")
	case errors.As(err, &en):
		fmt.Println("write", unix.ErrnoName(en))
	default:
		return err
	}
	return nil
}

// TestGuardHeldDescriptor: a process listed while it holds a file open
// for writing is refused its next write without passthrough; with
// passthrough the write goes to the backing file without the server (the
// documented limit: the refused open is what stops it).
func TestGuardHeldDescriptor(t *testing.T) {
	requireFUSE(t)
	for _, mode := range passthroughModes {
		t.Run(mode.name, func(t *testing.T) {
			g := &fakeGuard{uid: 4242}
			backing, mnt := openDirs(t)
			guardTree(t, backing)
			f := mountT(t, Options{Backing: backing, Mountpoint: mnt, Sink: &recorder{}, Passthrough: mode.on, Guard: g})
			exe, err := helperExe()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, exe, "-test.run=^$", f.Mountpoint())
			cmd.Env = append(os.Environ(), helperEnv+"=heldwrite")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4242, Gid: 4242}}
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			rd := bufio.NewReader(stdout)
			if line, err := rd.ReadString('\n'); err != nil || line != "opened\n" {
				t.Fatalf("helper: %q, %v", line, err)
			}
			g.on.Store(true) // listed now, with the descriptor open
			fmt.Fprintln(stdin)
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			want := "write EPERM\n"
			if f.Passthrough() {
				want = "write OK\n"
			}
			if line != want {
				t.Errorf("write through a held descriptor: %q, want %q", line, want)
			}
		})
	}
}
