package fusefs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/internal/capture"
)

// The test binary doubles as the child process that works through the mount
// (the server must never access its own mount): TestMain runs a helper when
// helperEnv is set.
const helperEnv = "SEMPROP_FUSEFS_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[len(os.Args)-1]))
	}
	code := m.Run()
	if helperDir != "" {
		os.RemoveAll(helperDir)
	}
	os.Exit(code)
}

func runHelper(mode, dir string) int {
	var err error
	switch mode {
	case "workload":
		err = onOtherThread(func() error { return workload(dir) })
	case "writes":
		err = onOtherThread(func() error { return manyWrites(dir, 1000, 100, 1000) })
	case "creates":
		err = onOtherThread(func() error { return creates(dir) })
	case "createwrite":
		err = onOtherThread(func() error {
			return os.WriteFile(filepath.Join(dir, "cw"), []byte("data"), 0o644)
		})
	case "handleops":
		err = onOtherThread(func() error { return handleOps(dir) })
	case "dirrename":
		err = onOtherThread(func() error { return dirRename(dir) })
	case "guarded":
		err = onOtherThread(func() error { return guardedOps(dir) })
		fmt.Print(guardedOut.String())
	case "heldwrite":
		err = heldWrite(dir)
	case "mount":
		err = mountAndHang(dir)
	default:
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// onOtherThread runs fn on a locked OS thread that is not the main thread,
// so FUSE sees a thread id different from the process id, and prints
// "pid tid" on stdout.
func onOtherThread(fn func() error) error {
	type res struct {
		tid int
		err error
	}
	ch := make(chan res, 1)
	release := make(chan struct{})
	defer close(release)
	var try func(depth int)
	try = func(depth int) {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() && depth < 8 {
			// Keep this (main) thread busy so the next goroutine gets another.
			go try(depth + 1)
			<-release
			return
		}
		err := fn()
		ch <- res{unix.Gettid(), err}
		<-release
	}
	go try(0)
	r := <-ch
	fmt.Printf("%d %d\n", unix.Getpid(), r.tid)
	return r.err
}

// creates makes one name of each kind the mount creates: a set-user-ID
// file, a directory, a fifo and a symbolic link (umask 0, so the modes are
// the ones asked for).
func creates(dir string) error {
	unix.Umask(0)
	p := func(s string) string { return filepath.Join(dir, s) }
	fd, err := unix.Open(p("suid"), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o4755)
	if err != nil {
		return err
	}
	if err := unix.Close(fd); err != nil {
		return err
	}
	if err := unix.Mkdir(p("dir"), 0o755); err != nil {
		return err
	}
	if err := unix.Mkfifo(p("fifo"), 0o640); err != nil {
		return err
	}
	return unix.Symlink("suid", p("sym"))
}

// handleOps creates files and changes them through their open handles in
// the ways the server must write itself even with passthrough: ftruncate,
// fallocate and copy_file_range into a new file. The result is in
// handleOpsWant.
// dirRename writes through a file whose directory is renamed (twice) while
// it is open, and makes names in renamed and removed-and-recreated
// directories: see TestPathsAfterDirRename.
func dirRename(dir string) error {
	p := func(s string) string { return filepath.Join(dir, s) }
	for _, d := range []string{"a", "a/b"} {
		if err := os.Mkdir(p(d), 0o755); err != nil {
			return err
		}
	}
	fd, err := unix.Open(p("a/b/f"), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	steps := []func() error{
		func() error { _, err := unix.Write(fd, []byte("1")); return err },
		func() error { return os.Rename(p("a"), p("z")) },
		func() error { _, err := unix.Write(fd, []byte("2")); return err },
		func() error { return closeDup(fd) }, // flush: a write under z/b
		func() error { return os.WriteFile(p("z/b/g"), nil, 0o644) },
		func() error { return os.Rename(p("z/b"), p("z/c")) },
		func() error { _, err := unix.Write(fd, []byte("3")); return err },
		func() error { return closeDup(fd) }, // a write under z/c
		func() error { return os.Remove(p("z/c/g")) },
		func() error { return os.Mkdir(p("y"), 0o755) },
		func() error { return unix.Rmdir(p("y")) },
		func() error { return os.Mkdir(p("y"), 0o755) },
		func() error { return os.WriteFile(p("y/h"), nil, 0o644) },
	}
	for i, s := range steps {
		if err := s(); err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
	}
	return nil
}

// closeDup closes a duplicate of fd: a FLUSH of its open file.
func closeDup(fd int) error {
	d, err := unix.Dup(fd)
	if err != nil {
		return err
	}
	return unix.Close(d)
}

func handleOps(dir string) error {
	p := func(s string) string { return filepath.Join(dir, s) }
	src, err := unix.Open(p("src"), unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	defer unix.Close(src)
	if _, err := unix.Write(src, []byte("0123456789")); err != nil {
		return err
	}
	dst, err := unix.Open(p("dst"), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	defer unix.Close(dst)
	if _, err := unix.Write(dst, []byte("hello world")); err != nil {
		return err
	}
	if err := unix.Ftruncate(dst, 5); err != nil {
		return fmt.Errorf("ftruncate: %w", err)
	}
	if err := unix.Fallocate(dst, 0, 0, 8); err != nil {
		return fmt.Errorf("fallocate: %w", err)
	}
	offIn, offOut := int64(2), int64(8)
	n, err := unix.CopyFileRange(src, &offIn, dst, &offOut, 4, 0)
	if err != nil || n != 4 {
		return fmt.Errorf("copy_file_range: %d, %w", n, err)
	}
	return nil
}

// handleOpsWant is dst after handleOps: "hello", three zero bytes of the
// fallocate, then "2345".
const handleOpsWant = "hello\x00\x00\x002345"

// workload is the scripted sequence of operations; wantWorkload lists the
// ops it must produce.
func workload(dir string) error {
	p := func(s string) string { return filepath.Join(dir, s) }
	write := func(name string, flags int, data ...string) error {
		fd, err := unix.Open(p(name), flags|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return err
		}
		for _, d := range data {
			if _, err := unix.Write(fd, []byte(d)); err != nil {
				unix.Close(fd)
				return err
			}
		}
		return unix.Close(fd)
	}
	steps := []struct {
		name string
		do   func() error
	}{
		{"mkdir d1", func() error { return unix.Mkdir(p("d1"), 0o755) }},
		{"mkdir d2", func() error { return unix.Mkdir(p("d2"), 0o755) }},
		{"create", func() error { return write("d1/a.txt", unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, "hello") }},
		{"append", func() error { return write("d1/a.txt", unix.O_WRONLY|unix.O_APPEND, " world") }},
		{"rename file", func() error { return unix.Rename(p("d1/a.txt"), p("d2/b.txt")) }},
		{"mkdir sub", func() error { return unix.Mkdir(p("d1/sub"), 0o755) }},
		{"rename dir", func() error { return unix.Rename(p("d1/sub"), p("d2/sub")) }},
		{"chmod", func() error { return unix.Chmod(p("d2/b.txt"), 0o600) }},
		{"link", func() error { return unix.Link(p("d2/b.txt"), p("d1/hard")) }},
		// FUSE names an inode, not the name the caller used: while a file
		// has two names, ops on it carry the newest. Drop the link first.
		{"rm hard", func() error { return unix.Unlink(p("d1/hard")) }},
		{"symlink", func() error { return unix.Symlink("b.txt", p("d2/sym")) }},
		{"setxattr", func() error { return unix.Setxattr(p("d2/b.txt"), "user.k", []byte("v"), 0) }},
		{"removexattr", func() error { return unix.Removexattr(p("d2/b.txt"), "user.k") }},
		{"truncate", func() error { return unix.Truncate(p("d2/b.txt"), 3) }},
		{"rewrite", func() error { return write("d2/b.txt", unix.O_WRONLY|unix.O_TRUNC, "xy") }},
		{"exchange", func() error {
			return unix.Renameat2(unix.AT_FDCWD, p("d2/b.txt"), unix.AT_FDCWD, p("d2/sub"), unix.RENAME_EXCHANGE)
		}},
		{"exchange back", func() error {
			return unix.Renameat2(unix.AT_FDCWD, p("d2/b.txt"), unix.AT_FDCWD, p("d2/sub"), unix.RENAME_EXCHANGE)
		}},
		{"dup", func() error {
			fd, err := unix.Open(p("d2/c"), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			if err != nil {
				return err
			}
			if _, err := unix.Write(fd, []byte("abc")); err != nil {
				return err
			}
			fd2, err := unix.Dup(fd)
			if err != nil {
				return err
			}
			unix.Close(fd)
			return unix.Close(fd2)
		}},
		{"open no write", func() error { return write("d2/c", unix.O_WRONLY) }},
		{"ftruncate", func() error {
			fd, err := unix.Open(p("d2/c"), unix.O_WRONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			if err := unix.Ftruncate(fd, 1); err != nil {
				return err
			}
			return unix.Close(fd)
		}},
		{"mkfifo", func() error { return unix.Mkfifo(p("d2/fifo"), 0o644) }},
		{"rm fifo", func() error { return unix.Unlink(p("d2/fifo")) }},
		{"rm sym", func() error { return unix.Unlink(p("d2/sym")) }},
		{"rm b", func() error { return unix.Unlink(p("d2/b.txt")) }},
		{"rm c", func() error { return unix.Unlink(p("d2/c")) }},
		{"rmdir sub", func() error { return unix.Rmdir(p("d2/sub")) }},
		{"rmdir d1", func() error { return unix.Rmdir(p("d1")) }},
		{"rmdir d2", func() error { return unix.Rmdir(p("d2")) }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

// manyWrites writes n chunks of size bytes through one descriptor, starting
// at offset off.
func manyWrites(dir string, n, size int, off int64) error {
	fd, err := unix.Open(filepath.Join(dir, "big"), unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	buf := []byte(strings.Repeat("x", size))
	for i := range n {
		if _, err := unix.Pwrite(fd, buf, off+int64(i*size)); err != nil {
			return err
		}
	}
	return unix.Close(fd)
}

// mountAndHang mounts a plain loopback of backing at mnt (args "FSNAME
// BACKING MNT" in dir, space separated), says "ready" and waits to be
// killed: the test simulates a crashed server.
func mountAndHang(arg string) error {
	f := strings.Fields(arg)
	if len(f) != 3 {
		return fmt.Errorf("want FSNAME BACKING MNT, got %q", arg)
	}
	root, err := fs.NewLoopbackRoot(f[1])
	if err != nil {
		return err
	}
	mo := MountOptions(false, false, nil)
	mo.FsName, mo.Name = f[0], f[0]
	if _, err := fs.Mount(f[2], root, &fs.Options{MountOptions: mo}); err != nil {
		return err
	}
	fmt.Println("ready")
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	select {
	case <-ch:
	case <-time.After(2 * time.Minute):
	}
	return nil
}

// requireFUSE skips the test unless it can mount.
func requireFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a direct FUSE mount")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs /dev/fuse: %v", err)
	}
}

// recorder is a capture.Sink that keeps every op.
type recorder struct {
	mu  sync.Mutex
	ops []*capture.Op
}

func (r *recorder) Emit(op *capture.Op) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []*capture.Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*capture.Op(nil), r.ops...)
}

// waitQuiet waits until at least n ops arrived and then nothing new for a
// short while (so extra ops would be seen), or the deadline passes.
func (r *recorder) waitQuiet(n int, d time.Duration) []*capture.Op {
	deadline := time.Now().Add(d)
	last, since := -1, time.Now()
	for time.Now().Before(deadline) {
		cur := len(r.snapshot())
		if cur != last {
			last, since = cur, time.Now()
		}
		if cur >= n && time.Since(since) > 300*time.Millisecond {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r.snapshot()
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// mountT mounts with opts, filling in directories and sink if empty, and
// unmounts in t.Cleanup (lazily if it must).
func mountT(t *testing.T, opts Options) *FS {
	t.Helper()
	if opts.Backing == "" {
		opts.Backing = t.TempDir()
	}
	if opts.Mountpoint == "" {
		opts.Mountpoint = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	done := make(chan struct{})
	var f *FS
	var err error
	go func() {
		defer close(done)
		f, err = Mount(opts)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("Mount did not return in 30s")
	}
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() { unmountT(t, f) })
	return f
}

func unmountT(t *testing.T, f *FS) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f.Unmount() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Unmount: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("Unmount hung; detaching %s", f.mount)
		unix.Unmount(f.mount, unix.MNT_DETACH)
	}
}

// helperDir holds the copy made by helperExe; TestMain removes it.
var helperDir string

// helperExe copies the test binary to a directory every user can reach, so
// a child can run it under another uid.
var helperExe = sync.OnceValues(func() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "fusefs-helper-")
	if err != nil {
		return "", err
	}
	helperDir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, filepath.Base(self))
	in, err := os.Open(self)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", err
	}
	return dst, out.Close()
})

// child is a helper process run through the mount.
type child struct {
	pid, tid int
	out      string
}

// runChild runs the test binary in helper mode with arg, as uid/gid, and
// parses the "pid tid" line it prints.
func runChild(t *testing.T, mode, arg string, uid, gid uint32) child {
	t.Helper()
	exe, err := helperExe()
	if err != nil {
		t.Fatalf("helper binary: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$", arg)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %s: %v\n%s", mode, err, stderr.String())
	}
	var c child
	c.out = string(out)
	if _, err := fmt.Sscan(string(out), &c.pid, &c.tid); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	return c
}

// sh runs a shell script (a child process, never this one, touches the
// mount) and returns its stdout.
func sh(t *testing.T, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "sh", "-c", script).CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("sh %q: %v", script, err)
		}
	}
	return string(out)
}

// startHangingMount starts a child that mounts backing at mnt with fsname
// and returns once it is serving.
func startHangingMount(t *testing.T, fsname, backing, mnt string) *exec.Cmd {
	t.Helper()
	exe, err := helperExe()
	if err != nil {
		t.Fatalf("helper binary: %v", err)
	}
	cmd := exec.Command(exe, "-test.run=^$", fsname+" "+backing+" "+mnt)
	cmd.Env = append(os.Environ(), helperEnv+"=mount")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		unix.Unmount(mnt, unix.MNT_DETACH)
	})
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- strings.TrimSpace(line) == "ready"
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("mount helper did not become ready")
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("mount helper timed out")
	}
	return cmd
}

func itoa(i int) string { return strconv.Itoa(i) }
