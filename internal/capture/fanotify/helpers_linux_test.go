package fanotify

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"go.uber.org/goleak"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
)

// childEnv makes the test binary act as a workload child (see TestMain).
const childEnv = "SEMPROP_FANOTIFY_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode == "nonroot" {
		os.Exit(runNonRoot(os.Args[len(os.Args)-1]))
	} else if mode != "" {
		os.Exit(runChild(mode, os.Args[len(os.Args)-1]))
	}
	goleak.VerifyTestMain(m)
}

// runChild runs a scripted workload in root. In "steps" mode it performs
// one step per line read from stdin and answers "ok" (or "err …"); in
// "burst" mode it runs every step at once. Then it waits for stdin to close
// so that the parent can still read its /proc entry.
func runChild(mode, root string) int {
	in := bufio.NewReader(os.Stdin)
	for _, s := range workload(root) {
		if mode == "steps" {
			if _, err := in.ReadString('\n'); err != nil {
				return 2
			}
		}
		if err := s.do(); err != nil {
			fmt.Printf("err %s: %v\n", s.name, err)
			return 1
		}
		if mode == "steps" {
			fmt.Println("ok")
		}
	}
	fmt.Println("done")
	io.Copy(io.Discard, in)
	return 0
}

type step struct {
	name string
	do   func() error
	want []opView // ops expected from this step, paths relative to root
}

func writeFile(p string, flag int, data string) error {
	f, err := os.OpenFile(p, flag, 0o644)
	if err != nil {
		return err
	}
	if data != "" {
		if _, err := f.WriteString(data); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// workload is the scripted sequence of operations and the ops each must
// produce.
func workload(root string) []step {
	p := func(s string) string { return filepath.Join(root, s) }
	return []step{
		{"mkdir a", func() error { return os.Mkdir(p("a"), 0o755) }, []opView{{Kind: capture.KindMkdir, Path: "a", IsDir: true}}},
		{"mkdir b", func() error { return os.Mkdir(p("b"), 0o755) }, []opView{{Kind: capture.KindMkdir, Path: "b", IsDir: true}}},
		{"create+write a/f", func() error { return writeFile(p("a/f"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, "hello") },
			[]opView{{Kind: capture.KindCreate, Path: "a/f"}, {Kind: capture.KindWrite, Path: "a/f", Size: 5}}},
		{"append a/f", func() error { return writeFile(p("a/f"), os.O_WRONLY|os.O_APPEND, " world") },
			[]opView{{Kind: capture.KindWrite, Path: "a/f", Size: 11}}},
		{"chmod a/f", func() error { return os.Chmod(p("a/f"), 0o600) }, []opView{{Kind: capture.KindAttrib, Path: "a/f"}}},
		{"rename a/f b/g", func() error { return os.Rename(p("a/f"), p("b/g")) },
			[]opView{{Kind: capture.KindRename, Path: "b/g", OldPath: "a/f"}}},
		{"link b/g b/h", func() error { return os.Link(p("b/g"), p("b/h")) },
			[]opView{{Kind: capture.KindLink, Path: "b/h", OldPath: "b/g"}}},
		{"symlink b/s", func() error { return os.Symlink("g", p("b/s")) },
			[]opView{{Kind: capture.KindSymlink, Path: "b/s", Target: "g"}}},
		{"rename dir a c", func() error { return os.Rename(p("a"), p("c")) },
			[]opView{{Kind: capture.KindRename, Path: "c", OldPath: "a", IsDir: true}}},
		{"create+write c/x", func() error { return writeFile(p("c/x"), os.O_CREATE|os.O_WRONLY, "x") },
			[]opView{{Kind: capture.KindCreate, Path: "c/x"}, {Kind: capture.KindWrite, Path: "c/x", Size: 1}}},
		{"mkdir c/d", func() error { return os.Mkdir(p("c/d"), 0o755) }, []opView{{Kind: capture.KindMkdir, Path: "c/d", IsDir: true}}},
		{"rename dir c b/c", func() error { return os.Rename(p("c"), p("b/c")) },
			[]opView{{Kind: capture.KindRename, Path: "b/c", OldPath: "c", IsDir: true}}},
		{"write b/c/d/y", func() error { return writeFile(p("b/c/d/y"), os.O_CREATE|os.O_WRONLY, "yy") },
			[]opView{{Kind: capture.KindCreate, Path: "b/c/d/y"}, {Kind: capture.KindWrite, Path: "b/c/d/y", Size: 2}}},
		{"unlink b/c/d/y", func() error { return os.Remove(p("b/c/d/y")) }, []opView{{Kind: capture.KindDelete, Path: "b/c/d/y"}}},
		{"rmdir b/c/d", func() error { return os.Remove(p("b/c/d")) }, []opView{{Kind: capture.KindRmdir, Path: "b/c/d", IsDir: true}}},
		{"unlink b/h", func() error { return os.Remove(p("b/h")) }, []opView{{Kind: capture.KindDelete, Path: "b/h"}}},
		{"unlink b/s", func() error { return os.Remove(p("b/s")) }, []opView{{Kind: capture.KindDelete, Path: "b/s"}}},
		{"chmod dir b", func() error { return os.Chmod(p("b"), 0o700) }, []opView{{Kind: capture.KindAttrib, Path: "b", IsDir: true}}},
		{"chmod root", func() error { return os.Chmod(root, 0o750) }, []opView{{Kind: capture.KindAttrib, Path: ".", IsDir: true}}},
		{"create b/n", func() error { return writeFile(p("b/n"), os.O_CREATE|os.O_WRONLY, "n") },
			[]opView{{Kind: capture.KindCreate, Path: "b/n"}, {Kind: capture.KindWrite, Path: "b/n", Size: 1}}},
		{"rename b/n over b/g", func() error { return os.Rename(p("b/n"), p("b/g")) },
			[]opView{{Kind: capture.KindRename, Path: "b/g", OldPath: "b/n"}}},
		{"create empty e", func() error { return writeFile(p("e"), os.O_CREATE|os.O_WRONLY, "") }, []opView{{Kind: capture.KindCreate, Path: "e"}}},
		{"truncate e", func() error { return writeFile(p("e"), os.O_WRONLY|os.O_TRUNC, "new") },
			[]opView{{Kind: capture.KindWrite, Path: "e", Size: 3}}},
	}
}

// opView is the part of an op the tests compare.
type opView struct {
	Kind    capture.Kind
	Path    string
	OldPath string
	Target  string
	IsDir   bool
	Size    int64 // writes only
	PID     int32
	Comm    string
	Rescan  bool
}

func view(root string, op *capture.Op) opView {
	rel := func(p string) string {
		if p == "" {
			return ""
		}
		if p == root {
			return "."
		}
		return strings.TrimPrefix(p, root+"/")
	}
	v := opView{Kind: op.Kind, Path: rel(op.Path), OldPath: rel(op.OldPath), Target: op.Target,
		IsDir: op.IsDir, PID: op.PID, Comm: op.Comm, Rescan: op.Rescan}
	if op.Kind == capture.KindWrite {
		v.Size = op.Size
	}
	return v
}

// recorder is a Sink that keeps every op.
type recorder struct {
	mu  sync.Mutex
	ops []*capture.Op
}

var _ capture.Sink = (*recorder)(nil)

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

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ops)
}

// waitFor polls until cond holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	waitForOr(t, timeout, what, cond, nil)
}

// waitForOr is waitFor that, on a timeout, adds what explain says (the ops
// missing, the watcher's counters) to the failure.
func waitForOr(t *testing.T, timeout time.Duration, what string, cond func() bool, explain func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			if explain != nil {
				t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, explain())
			}
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: fanotify filesystem marks need root (CAP_SYS_ADMIN)")
	}
}

// tmpfsRoot mounts a small tmpfs on a fresh directory, for an isolated tree
// (tmpfs supports file handles on this kernel, so fanotify FID marks work).
func tmpfsRoot(t testing.TB) string {
	t.Helper()
	needRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("semprop-test", dir, "tmpfs", 0, "size=256m,nr_inodes=400k"); err != nil {
		t.Skipf("skipping: cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// startWatcher runs a watcher on root until the test ends.
func startWatcher(t testing.TB, opts Options) (*Watcher, *recorder) {
	t.Helper()
	rec := &recorder{}
	opts.Sink = rec
	w, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return w, rec
}

// child is a workload process (the re-executed test binary).
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startChild(t *testing.T, mode, root string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$", root)
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewReader(out)}
	t.Cleanup(func() {
		in.Close()
		cmd.Wait()
		cancel()
	})
	return c
}

func (c *child) line(t *testing.T) string {
	t.Helper()
	s, err := c.out.ReadString('\n')
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	return strings.TrimSpace(s)
}

// procComm is what /proc/PID/comm says for the test binary.
func procComm(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// withActor fills in the expected process context.
func withActor(ops []opView, pid int32, comm string) []opView {
	out := make([]opView, len(ops))
	for i, o := range ops {
		o.PID, o.Comm = pid, comm
		out[i] = o
	}
	return out
}

var _ = event.HasPID

// testLogger logs to the test at debug level with -v.
func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
