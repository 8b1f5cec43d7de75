package fusefs

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/internal/capture"
)

// TestReleaseLeavesAnotherHandlesChange: with passthrough, a handle's
// release (which the kernel sends after close(2) has returned) compares
// the file with the state it opened to catch writes the kernel passed
// through without the server. A change made in the meantime through
// another handle — here an ftruncate through a descriptor opened after
// the first was closed — is that handle's to report, once, when it is
// closed; the late release must not report it a second time.
func TestReleaseLeavesAnotherHandlesChange(t *testing.T) {
	requireFUSE(t)
	rec := &recorder{}
	var armed atomic.Bool
	entered, proceed, finished := make(chan struct{}, 1), make(chan struct{}), make(chan struct{}, 1)
	hook := func(done bool) {
		if !armed.Load() {
			return
		}
		if !done {
			entered <- struct{}{}
			<-proceed
			return
		}
		armed.Store(false)
		finished <- struct{}{}
	}
	f := mountT(t, Options{Sink: rec, Passthrough: true, onRelease: hook})
	if !f.Passthrough() {
		t.Skipf("passthrough is not in effect here (kernel %s)", kernelRelease())
	}
	p := filepath.Join(f.Mountpoint(), "f")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := len(rec.waitQuiet(2, 5*time.Second)) // create, write

	// The first descriptor: opened for writing, closed without a write;
	// its release is held back.
	armed.Store(true)
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Close(fd); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		close(proceed)
		t.Fatal("the first descriptor's release did not arrive")
	}
	// The second: truncates the file, and is closed after the first
	// descriptor's release has run.
	fd2, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		close(proceed)
		t.Fatal(err)
	}
	defer unix.Close(fd2)
	if err := unix.Ftruncate(fd2, 1); err != nil {
		close(proceed)
		t.Fatal(err)
	}
	close(proceed)
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("the first descriptor's release did not finish")
	}
	if err := unix.Close(fd2); err != nil {
		t.Fatal(err)
	}
	got := rec.waitQuiet(before+1, 5*time.Second)[before:]
	var writes []*capture.Op
	for _, op := range got {
		if op.Kind == capture.KindWrite {
			writes = append(writes, op)
		}
	}
	if len(writes) != 1 || writes[0].Size != 1 {
		for _, op := range got {
			t.Logf("op %s %s size %d pid %d", op.Kind, op.Path, op.Size, op.PID)
		}
		t.Fatalf("%d writes reported for one ftruncate, want 1 (of size 1)", len(writes))
	}
}
