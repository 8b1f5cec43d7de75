package fanotify

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/capture"
)

// runNonRoot is the child of TestFallbackNotRoot, running as an
// unprivileged user: New must fall back to inotify with a warning and
// still report ops.
func runNonRoot(root string) int {
	var logBuf bytes.Buffer
	ops := make(chan *capture.Op, 16)
	w, err := New(Options{
		Root:   root,
		Sink:   capture.SinkFunc(func(op *capture.Op) { ops <- op }),
		Logger: slog.New(slog.NewTextHandler(&logBuf, nil)),
	})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	if err := os.WriteFile(filepath.Join(root, "hello"), nil, 0o644); err != nil {
		fmt.Println("error", err)
		cancel()
		<-done
		return 1
	}
	var got string
	select {
	case op := <-ops:
		got = op.Kind.String() + ":" + filepath.Base(op.Path)
	case <-time.After(5 * time.Second):
		got = "timeout"
	}
	cancel()
	<-done
	warned := strings.Contains(logBuf.String(), "level=WARN") && strings.Contains(logBuf.String(), "falling back to inotify")
	fmt.Printf("mode=%s op=%s warned=%v\n", w.Mode(), got, warned)
	return 0
}

func TestFallbackNotRoot(t *testing.T) {
	needRoot(t) // to switch to an unprivileged user
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary and the tree must be reachable by "nobody".
	bin := filepath.Join(dir, "fanotify.test")
	src, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(dst, src)
	src.Close()
	dst.Close()
	root := filepath.Join(dir, "tree")
	if err := os.Mkdir(root, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{root, dir, filepath.Dir(dir)} {
		os.Chmod(d, 0o777)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^$", root)
	cmd.Env = append(os.Environ(), childEnv+"=nonroot")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "mode=inotify op=fs.create:hello warned=true"; got != want {
		t.Errorf("unprivileged child: %q, want %q", got, want)
	}
}
