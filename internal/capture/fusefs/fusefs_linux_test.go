package fusefs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hanwen/go-fuse/v2/fuse"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
)

const (
	childUID = 1234
	childGID = 2345
)

var passthroughModes = []struct {
	name string
	on   bool
}{{"passthrough=off", false}, {"passthrough=on", true}}

// wantWorkload is what workload (helpers_linux_test.go) must produce, in
// order, for a child with context c, under mount point m.
func wantWorkload(m string, c capture.Op, passthrough bool) []*capture.Op {
	const (
		who     = event.HasPID | event.HasTID | event.HasUID | event.HasGID
		newName = who | event.HasInode | event.HasMode
		attrs   = newName | event.HasSize
		bytes   = event.HasBytes | event.HasOffset | event.HasLength
	)
	op := func(k capture.Kind, path string, known event.Fields, mod func(*capture.Op)) *capture.Op {
		o := c
		o.Kind, o.Boundary, o.Path, o.Known = k, event.BoundaryFUSE, m+"/"+path, known
		if mod != nil {
			mod(&o)
		}
		return &o
	}
	dir := func(o *capture.Op) { o.IsDir = true }
	write := func(size, off, n int64) func(*capture.Op) {
		return func(o *capture.Op) {
			o.Size = size
			if !passthrough {
				o.Bytes, o.Offset, o.Length = n, off, n
				o.Known |= bytes
			}
		}
	}
	size := func(n int64) func(*capture.Op) { return func(o *capture.Op) { o.Size = n } }
	return []*capture.Op{
		op(capture.KindMkdir, "d1", newName, dir),
		op(capture.KindMkdir, "d2", newName, dir),
		op(capture.KindCreate, "d1/a.txt", attrs, nil),
		op(capture.KindWrite, "d1/a.txt", attrs, write(5, 0, 5)),
		op(capture.KindWrite, "d1/a.txt", attrs, write(11, 5, 6)),
		op(capture.KindRename, "d2/b.txt", who|event.HasInode, func(o *capture.Op) { o.OldPath = m + "/d1/a.txt" }),
		op(capture.KindMkdir, "d1/sub", newName, dir),
		op(capture.KindRename, "d2/sub", who|event.HasInode, func(o *capture.Op) { o.OldPath, o.IsDir = m+"/d1/sub", true }),
		op(capture.KindAttrib, "d2/b.txt", attrs, size(11)),
		op(capture.KindLink, "d1/hard", newName, func(o *capture.Op) { o.OldPath = m + "/d2/b.txt" }),
		op(capture.KindDelete, "d1/hard", who|event.HasInode, nil),
		op(capture.KindSymlink, "d2/sym", newName, func(o *capture.Op) { o.Target = "b.txt" }),
		op(capture.KindAttrib, "d2/b.txt", who|event.HasInode, nil),
		op(capture.KindAttrib, "d2/b.txt", who|event.HasInode, nil),
		op(capture.KindWrite, "d2/b.txt", attrs, size(3)), // truncate(2)
		op(capture.KindWrite, "d2/b.txt", attrs, write(2, 0, 2)),
		// RENAME_EXCHANGE: two renames each; first b.txt (a file) and sub swap.
		op(capture.KindRename, "d2/sub", who|event.HasInode, func(o *capture.Op) { o.OldPath = m + "/d2/b.txt" }),
		op(capture.KindRename, "d2/b.txt", who|event.HasInode, func(o *capture.Op) { o.OldPath, o.IsDir = m+"/d2/sub", true }),
		op(capture.KindRename, "d2/sub", who|event.HasInode, func(o *capture.Op) { o.OldPath, o.IsDir = m+"/d2/b.txt", true }),
		op(capture.KindRename, "d2/b.txt", who|event.HasInode, func(o *capture.Op) { o.OldPath = m + "/d2/sub" }),
		op(capture.KindCreate, "d2/c", attrs, nil),
		op(capture.KindWrite, "d2/c", attrs, write(3, 0, 3)), // once, though two descriptors closed
		op(capture.KindWrite, "d2/c", attrs, func(o *capture.Op) { // ftruncate: folded into the handle's write
			o.Size = 1
			if !passthrough {
				o.Known |= event.HasBytes // exactly 0
			}
		}),
		op(capture.KindCreate, "d2/fifo", attrs, nil),
		op(capture.KindDelete, "d2/fifo", who|event.HasInode, nil),
		op(capture.KindDelete, "d2/sym", who|event.HasInode, nil),
		op(capture.KindDelete, "d2/b.txt", who|event.HasInode, nil),
		op(capture.KindDelete, "d2/c", who|event.HasInode, nil),
		op(capture.KindRmdir, "d2/sub", who|event.HasInode, dir),
		op(capture.KindRmdir, "d1", who|event.HasInode, dir),
		op(capture.KindRmdir, "d2", who|event.HasInode, dir),
	}
}

// TestWorkload runs a scripted workload in a child process (another uid,
// on a thread that is not its main thread) through the mount and compares
// the ops with the expected list, in both passthrough modes.
func TestWorkload(t *testing.T) {
	requireFUSE(t)
	for _, mode := range passthroughModes {
		t.Run(mode.name, func(t *testing.T) {
			rec := &recorder{}
			backing, mnt := openDirs(t)
			if err := os.Chown(backing, childUID, childGID); err != nil {
				t.Fatal(err)
			}
			f := mountT(t, Options{Backing: backing, Mountpoint: mnt, Sink: rec, Passthrough: mode.on})
			if f.Passthrough() != mode.on {
				t.Fatalf("Passthrough() = %v, want %v (kernel %s)", f.Passthrough(), mode.on, kernelRelease())
			}
			c := runChild(t, "workload", f.Mountpoint(), childUID, childGID)
			if c.pid == c.tid {
				t.Logf("child ran on its main thread (tid == pid)")
			}
			exe, _ := helperExe()
			ctxOp := capture.Op{PID: int32(c.pid), TID: int32(c.tid), UID: childUID, GID: childGID,
				Comm: filepath.Base(exe)[:min(15, len(filepath.Base(exe)))], Exe: exe}
			want := wantWorkload(f.Mountpoint(), ctxOp, mode.on)
			got := rec.waitQuiet(len(want), 10*time.Second)
			opts := cmp.Options{cmpopts.IgnoreFields(capture.Op{}, "Time", "Inode", "Mode")}
			if diff := cmp.Diff(want, got, opts); diff != "" {
				t.Errorf("ops mismatch (-want +got):\n%s", diff)
			}
			for i, op := range got {
				if op.Known&event.HasInode != 0 && op.Inode == 0 {
					t.Errorf("op %d %v %s: Inode = 0 with HasInode", i, op.Kind, op.Path)
				}
			}
			st := f.Stats()
			if mode.on && st.WriteCalls != 0 {
				t.Errorf("passthrough: WriteCalls = %d, want 0 (data bypasses the server)", st.WriteCalls)
			}
			if !mode.on && st.WriteCalls == 0 {
				t.Errorf("no passthrough: WriteCalls = 0, want > 0")
			}
		})
	}
}

// TestPassthroughFallback: when the kernel refuses passthrough (simulated),
// Mount warns, Passthrough reports false and data goes through the server,
// also for files a reader opened first.
func TestPassthroughFallback(t *testing.T) {
	requireFUSE(t)
	orig := probe
	probe = func(*fuse.Server) error { return errors.New("simulated refusal") }
	t.Cleanup(func() { probe = orig })
	backing := t.TempDir()
	if err := os.WriteFile(filepath.Join(backing, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	f := mountT(t, Options{Backing: backing, Sink: rec, Passthrough: true})
	if f.Passthrough() {
		t.Fatalf("Passthrough() = true after a refused probe, want false")
	}
	m := f.Mountpoint()
	// A reader keeps f open while a writer appends: the writer's data must
	// still reach the server (a backing file registered for the reader would
	// have been shared).
	sh(t, "exec 3<"+m+"/f; printf abc >>"+m+"/f; exec 3<&-")
	got := rec.waitQuiet(1, 10*time.Second)
	if len(got) != 1 || got[0].Kind != capture.KindWrite || got[0].Bytes != 3 || got[0].Known&event.HasBytes == 0 {
		t.Errorf("ops = %v, want one write of 3 counted bytes", kinds(got))
	}
	if st := f.Stats(); st.WriteCalls == 0 {
		t.Errorf("WriteCalls = 0, want the write served by the server")
	}
}

// TestReaderThenWriter: a file held open by a reader while another
// descriptor appends yields one write in both modes (in passthrough mode the
// writer shares the reader's backing file).
func TestReaderThenWriter(t *testing.T) {
	requireFUSE(t)
	for _, mode := range passthroughModes {
		t.Run(mode.name, func(t *testing.T) {
			backing := t.TempDir()
			if err := os.WriteFile(filepath.Join(backing, "f"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			f := mountT(t, Options{Backing: backing, Sink: rec, Passthrough: mode.on})
			m := f.Mountpoint()
			sh(t, "exec 3<"+m+"/f; printf abc >>"+m+"/f; exec 3<&-")
			got := rec.waitQuiet(1, 10*time.Second)
			if len(got) != 1 || got[0].Kind != capture.KindWrite || got[0].Size != 4 {
				t.Fatalf("ops = %v, want one write to size 4", kinds(got))
			}
			if hasBytes := got[0].Known&event.HasBytes != 0; hasBytes == mode.on || !mode.on && got[0].Bytes != 3 {
				t.Errorf("Bytes = %d (known %v), want 3 known without passthrough, unknown with", got[0].Bytes, hasBytes)
			}
		})
	}
}

// TestCoalescing: 1000 writes through one descriptor are one KindWrite with
// the total byte count and the written range.
func TestCoalescing(t *testing.T) {
	requireFUSE(t)
	for _, mode := range passthroughModes {
		t.Run(mode.name, func(t *testing.T) {
			rec := &recorder{}
			f := mountT(t, Options{Sink: rec, Passthrough: mode.on})
			runChild(t, "writes", f.Mountpoint(), 0, 0)
			got := rec.waitQuiet(2, 10*time.Second)
			if len(got) != 2 || got[0].Kind != capture.KindCreate || got[1].Kind != capture.KindWrite {
				t.Fatalf("ops = %v, want create, write", kinds(got))
			}
			w := got[1]
			const n, size, off = 1000, 100, 1000
			if w.Size != off+n*size {
				t.Errorf("Size = %d, want %d", w.Size, off+n*size)
			}
			if mode.on {
				if w.Known&event.HasBytes != 0 {
					t.Errorf("passthrough: Known has HasBytes, want unknown byte count")
				}
				return
			}
			if w.Bytes != n*size || w.Offset != off || w.Length != n*size {
				t.Errorf("Bytes, Offset, Length = %d, %d, %d, want %d, %d, %d", w.Bytes, w.Offset, w.Length, n*size, off, n*size)
			}
			// The kernel splits a write that straddles a page boundary, so
			// there may be a few more WRITE requests than write(2) calls.
			st := f.Stats()
			if st.WriteCalls < n || st.WritesCoalesced != st.WriteCalls-1 || st.BytesWritten != n*size {
				t.Errorf("Stats WriteCalls, WritesCoalesced, BytesWritten = %d, %d, %d, want >= %d, WriteCalls-1, %d",
					st.WriteCalls, st.WritesCoalesced, st.BytesWritten, n, n*size)
			}
		})
	}
}

// openDirs returns a backing directory and a mount point that other users
// can reach (t.TempDir's parent is private).
func openDirs(t *testing.T) (backing, mnt string) {
	t.Helper()
	backing, mnt = t.TempDir(), t.TempDir()
	if err := os.Chmod(filepath.Dir(backing), 0o755); err != nil {
		t.Fatal(err)
	}
	return backing, mnt
}

func kinds(ops []*capture.Op) []string {
	var s []string
	for _, op := range ops {
		s = append(s, op.Kind.String()+" "+op.Path)
	}
	return s
}

// TestInvalidation changes files directly on the backing tree: with long
// cache timeouts the mount serves stale attributes and names until the
// Invalidate calls, and fresh ones right after.
func TestInvalidation(t *testing.T) {
	requireFUSE(t)
	for _, mode := range passthroughModes {
		t.Run(mode.name, func(t *testing.T) {
			backing := t.TempDir()
			for name, data := range map[string]string{"f": "old\n", "g": "g\n", "h": "h\n"} {
				if err := os.WriteFile(filepath.Join(backing, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f := mountT(t, Options{Backing: backing, Sink: &recorder{}, Passthrough: mode.on,
				EntryTimeout: time.Hour, AttrTimeout: time.Hour})
			m := f.Mountpoint()
			// stat shows the cached size (a read past it would refresh it);
			// test -e the cached names.
			look := `stat -c %s ` + m + `/f; test -e ` + m + `/g && echo g; test -e ` + m + `/h && echo h`
			if got, want := sh(t, look), "4\ng\nh\n"; got != want {
				t.Fatalf("before: got %q, want %q", got, want)
			}
			// Direct changes: f grows, g is renamed away, h is deleted.
			if err := os.WriteFile(filepath.Join(backing, "f"), []byte("new and longer\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(backing, "g"), filepath.Join(backing, "g2")); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(backing, "h")); err != nil {
				t.Fatal(err)
			}
			if got, want := sh(t, look), "4\ng\nh\n"; got != want {
				t.Fatalf("without invalidation: got %q, want the stale %q", got, want)
			}
			sent := f.Stats().InvalidationsSent
			f.InvalidateContent("f")
			f.InvalidateEntry("", "g")
			f.InvalidateDelete("", "h")
			waitFor(t, 5*time.Second, func() bool { return f.Stats().InvalidationsSent >= sent+3 })
			if got, want := sh(t, look+"; cat "+m+"/f; ls "+m), "15\nnew and longer\nf\ng2\n"; got != want {
				t.Errorf("after invalidation: got %q, want %q", got, want)
			}
			st := f.Stats()
			if st.InvalidationsQueued != 3 || st.InvalidationsDropped != 0 {
				t.Errorf("Stats queued, dropped = %d, %d, want 3, 0", st.InvalidationsQueued, st.InvalidationsDropped)
			}
		})
	}
}

// TestInvalidateUnknown: a path the kernel never looked up is skipped.
func TestInvalidateUnknown(t *testing.T) {
	requireFUSE(t)
	f := mountT(t, Options{Sink: &recorder{}})
	f.InvalidateContent("no/such/file")
	waitFor(t, 5*time.Second, func() bool { return f.Stats().InvalidationsSkipped == 1 })
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStaleMount kills a serving process (leaving "transport endpoint is not
// connected") and mounts over its corpse.
func TestStaleMount(t *testing.T) {
	requireFUSE(t)
	for _, fsname := range []string{"semprop", "otherfs"} {
		t.Run(fsname, func(t *testing.T) {
			backing, mnt := t.TempDir(), t.TempDir()
			if err := os.WriteFile(filepath.Join(backing, "x"), []byte("x\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := startHangingMount(t, fsname, backing, mnt)
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			var st syscall.Stat_t
			if err := syscall.Stat(mnt, &st); !errors.Is(err, syscall.ENOTCONN) {
				t.Fatalf("stat of the dead mount: %v, want ENOTCONN", err)
			}
			f := mountT(t, Options{Backing: backing, Mountpoint: mnt, Sink: &recorder{}})
			if got := sh(t, "cat "+f.Mountpoint()+"/x"); got != "x\n" {
				t.Errorf("cat through the new mount = %q, want %q", got, "x\n")
			}
		})
	}
}

// TestLiveForeignMount: a live fuse mount of another file system is not
// taken over.
func TestLiveForeignMount(t *testing.T) {
	requireFUSE(t)
	backing, mnt := t.TempDir(), t.TempDir()
	startHangingMount(t, "otherfs", backing, mnt)
	f, err := Mount(Options{Backing: backing, Mountpoint: mnt, Sink: &recorder{}, Logger: testLogger(t)})
	if err == nil {
		unmountT(t, f) // mounted on top: take it off again so the cleanup finds the foreign one
	}
	if !errors.Is(err, ErrMountpointBusy) {
		t.Errorf("Mount over a live foreign mount: %v, want ErrMountpointBusy", err)
	}
}

// TestUnmountIdempotent: a second Unmount is a no-op, Wait returns and no
// goroutine is left behind.
func TestUnmountIdempotent(t *testing.T) {
	requireFUSE(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := mountT(t, Options{Sink: &recorder{}})
	if err := f.Unmount(); err != nil {
		t.Fatalf("Unmount: %v", err)
	}
	if err := f.Unmount(); err != nil {
		t.Errorf("second Unmount: %v, want nil", err)
	}
	done := make(chan struct{})
	go func() { f.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after Unmount")
	}
	if _, ok := topMount(f.Mountpoint()); ok {
		if e, _ := topMount(f.Mountpoint()); e.isFUSE() {
			t.Errorf("fuse mount still present at %s", f.Mountpoint())
		}
	}
}

func TestMountErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sub", "inner"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts Options
		want error
	}{
		{"no sink", Options{Backing: dir, Mountpoint: dir}, ErrNoSink},
		{"backing is a file", Options{Backing: file, Mountpoint: dir, Sink: &recorder{}}, ErrNotDir},
		{"mount point is a file", Options{Backing: filepath.Join(dir, "sub"), Mountpoint: file, Sink: &recorder{}}, ErrNotDir},
		{"mount point in backing", Options{Backing: dir, Mountpoint: filepath.Join(dir, "sub"), Sink: &recorder{}}, ErrOverlap},
		{"backing in mount point", Options{Backing: filepath.Join(dir, "sub"), Mountpoint: dir, Sink: &recorder{}}, ErrOverlap},
		{"same directory", Options{Backing: dir, Mountpoint: dir + "/.", Sink: &recorder{}}, ErrOverlap},
		{"mount point through a symlink", Options{Backing: filepath.Join(dir, "sub"), Mountpoint: filepath.Join(dir, "link", "inner"), Sink: &recorder{}}, ErrOverlap},
		{"backing missing", Options{Backing: filepath.Join(dir, "nope"), Mountpoint: dir, Sink: &recorder{}}, os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Mount(tt.opts)
			if !errors.Is(err, tt.want) {
				t.Errorf("Mount(%s) = %v, want %v", tt.name, err, tt.want)
			}
		})
	}
}

func kernelRelease() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "?"
	}
	var b strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}

// TestUnmountBusy: with a file held open through the mount, Unmount falls
// back to a lazy detach; the server stops once the holder is gone.
func TestUnmountBusy(t *testing.T) {
	requireFUSE(t)
	backing := t.TempDir()
	if err := os.WriteFile(filepath.Join(backing, "held"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := mountT(t, Options{Backing: backing, Sink: &recorder{}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	holder := exec.CommandContext(ctx, "sh", "-c", "exec sleep 60 < "+f.Mountpoint()+"/held")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Wait()
	defer holder.Process.Kill()
	waitFor(t, 10*time.Second, func() bool {
		fds, _ := os.ReadDir("/proc/" + itoa(holder.Process.Pid) + "/fd")
		for _, fd := range fds {
			if target, _ := os.Readlink("/proc/" + itoa(holder.Process.Pid) + "/fd/" + fd.Name()); strings.HasSuffix(target, "/held") {
				return true
			}
		}
		return false
	})
	if err := f.Unmount(); err != nil {
		t.Fatalf("Unmount while busy: %v, want a lazy detach", err)
	}
	if e, ok := topMount(f.Mountpoint()); ok && e.isFUSE() {
		t.Errorf("mount still attached at %s after Unmount", f.Mountpoint())
	}
	holder.Process.Kill()
	holder.Wait()
	done := make(chan struct{})
	go func() { f.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("server did not stop after the last user left")
	}
}

// TestConcurrentWriters: several processes create, write and delete files at
// once; every op is reported once, with the right process.
func TestConcurrentWriters(t *testing.T) {
	requireFUSE(t)
	for _, mode := range passthroughModes {
		t.Run(mode.name, func(t *testing.T) {
			rec := &recorder{}
			f := mountT(t, Options{Sink: rec, Passthrough: mode.on})
			const procs, files = 4, 50
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var cmds []*exec.Cmd
			for p := range procs {
				dir := filepath.Join(f.Mountpoint(), "p"+itoa(p))
				script := "mkdir " + dir + " && i=0; while [ $i -lt " + itoa(files) + " ]; do printf data >" + dir + "/f$i; i=$((i+1)); done; " +
					"i=0; while [ $i -lt " + itoa(files) + " ]; do rm -f " + dir + "/f$i; i=$((i+1)); done"
				cmd := exec.CommandContext(ctx, "sh", "-c", script)
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				cmds = append(cmds, cmd)
			}
			pids := map[int32]string{}
			for p, cmd := range cmds {
				if err := cmd.Wait(); err != nil {
					t.Fatalf("writer %d: %v", p, err)
				}
				pids[int32(cmd.Process.Pid)] = "p" + itoa(p)
			}
			// mkdir is a child process of sh; creates and writes come from sh
			// (redirections); rm is a child too.
			got := rec.waitQuiet(procs*(1+3*files), 20*time.Second)
			count := map[string]int{}
			for _, op := range got {
				dir := filepath.Base(filepath.Dir(op.Path))
				if op.Kind == capture.KindCreate || op.Kind == capture.KindWrite {
					if pids[op.PID] != dir {
						t.Errorf("%v %s: PID %d, want the sh of %s", op.Kind, op.Path, op.PID, dir)
					}
				}
				count[op.Kind.String()]++
			}
			want := map[string]int{"fs.mkdir": procs, "fs.create": procs * files, "fs.write": procs * files, "fs.delete": procs * files}
			if diff := cmp.Diff(want, count); diff != "" {
				t.Errorf("op counts (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCreateOwner: what a caller creates through the mount belongs to the
// caller on the backing tree, and keeps the mode it was created with —
// root's set-user-ID file too (the library's loopback chowns every new name,
// which clears those bits; the mount chowns only when the owner differs).
func TestCreateOwner(t *testing.T) {
	requireFUSE(t)
	for _, who := range []struct {
		name     string
		uid, gid uint32
		suidMode uint32 // the file's mode bits on the backing tree
	}{
		{"root", 0, 0, 0o4755},
		// chown by root clears set-user-ID on a regular file
		{"other", childUID, childGID, 0o755},
	} {
		t.Run(who.name, func(t *testing.T) {
			backing, mnt := openDirs(t)
			if err := os.Chmod(backing, 0o777); err != nil {
				t.Fatal(err)
			}
			f := mountT(t, Options{Backing: backing, Mountpoint: mnt, Sink: &recorder{}, Passthrough: true})
			runChild(t, "creates", f.Mountpoint(), who.uid, who.gid)
			for _, c := range []struct {
				name string
				mode uint32
			}{
				{"suid", unix.S_IFREG | who.suidMode},
				{"dir", unix.S_IFDIR | 0o755},
				{"fifo", unix.S_IFIFO | 0o640},
				{"sym", unix.S_IFLNK | 0o777},
			} {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(backing, c.name), &st); err != nil {
					t.Fatal(err)
				}
				if st.Uid != who.uid || st.Gid != who.gid {
					t.Errorf("%s: owner %d:%d, want %d:%d", c.name, st.Uid, st.Gid, who.uid, who.gid)
				}
				if st.Mode != c.mode {
					t.Errorf("%s: mode %o, want %o", c.name, st.Mode, c.mode)
				}
			}
		})
	}
}

// TestCreateAnchor: with passthrough, a file created through the mount is
// held by the server on a read-only descriptor, so the kernel boundary sees
// no close-write of the daemon's own at release (the writer's close-write
// comes from the writer); what the server must write itself (ftruncate,
// fallocate, copy_file_range into the file) still works, in both modes.
func TestCreateAnchor(t *testing.T) {
	requireFUSE(t)
	for _, mode := range passthroughModes {
		t.Run(mode.name, func(t *testing.T) {
			backing, mnt := openDirs(t)
			// The helper binary is copied on first use: before the mark,
			// so the copy's close-write is not counted as the server's.
			if _, err := helperExe(); err != nil {
				t.Fatalf("helper binary: %v", err)
			}
			gfd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_REPORT_FID, unix.O_RDONLY)
			if err != nil {
				t.Skipf("fanotify: %v", err)
			}
			defer unix.Close(gfd)
			if err := unix.FanotifyMark(gfd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, unix.FAN_CLOSE_WRITE, unix.AT_FDCWD, backing); err != nil {
				t.Skipf("fanotify mark: %v", err)
			}
			f := mountT(t, Options{Backing: backing, Mountpoint: mnt, Sink: &recorder{}, Passthrough: mode.on})
			c := runChild(t, "createwrite", f.Mountpoint(), 0, 0)
			if err := f.Unmount(); err != nil { // every handle released
				t.Fatal(err)
			}
			if got, err := os.ReadFile(filepath.Join(backing, "cw")); err != nil || string(got) != "data" {
				t.Errorf("cw = %q, %v; want \"data\"", got, err)
			}
			byPID := map[int32]int{}
			buf := make([]byte, 64<<10)
			for {
				n, err := unix.Read(gfd, buf)
				if n <= 0 || err != nil {
					break
				}
				for b := buf[:n]; len(b) >= unix.FAN_EVENT_METADATA_LEN; {
					m := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&b[0]))
					byPID[m.Pid]++
					b = b[m.Event_len:]
				}
			}
			self := int32(os.Getpid())
			if mode.on {
				if byPID[self] != 0 {
					t.Errorf("passthrough: %d close-write records from the server, want 0 (by pid: %v)", byPID[self], byPID)
				}
				if byPID[int32(c.pid)] == 0 {
					t.Errorf("passthrough: no close-write record from the writer %d (by pid: %v)", c.pid, byPID)
				}
			} else if byPID[self] == 0 {
				t.Errorf("no passthrough: no close-write record from the server (by pid: %v)", byPID)
			}

			// What the server writes itself.
			f = mountT(t, Options{Backing: backing, Mountpoint: mnt, Sink: &recorder{}, Passthrough: mode.on})
			runChild(t, "handleops", f.Mountpoint(), 0, 0)
			got, err := os.ReadFile(filepath.Join(backing, "dst"))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != handleOpsWant {
				t.Errorf("dst = %q, want %q", got, handleOpsWant)
			}
		})
	}
}

// TestPathsAfterDirRename: the mount caches directories' paths; every op
// after a rename of a directory (or of its parent) through the mount, or
// the removal and re-creation of one, carries the path as it is now.
func TestPathsAfterDirRename(t *testing.T) {
	requireFUSE(t)
	for _, mode := range passthroughModes {
		t.Run(mode.name, func(t *testing.T) {
			rec := &recorder{}
			backing, mnt := openDirs(t)
			f := mountT(t, Options{Backing: backing, Mountpoint: mnt, Sink: rec, Passthrough: mode.on})
			runChild(t, "dirrename", f.Mountpoint(), 0, 0)
			want := []string{
				"fs.mkdir a", "fs.mkdir a/b", "fs.create a/b/f",
				"fs.rename z (from a)", "fs.write z/b/f",
				"fs.create z/b/g", "fs.rename z/c (from z/b)", "fs.write z/c/f",
				"fs.delete z/c/g", "fs.mkdir y", "fs.rmdir y", "fs.mkdir y", "fs.create y/h",
			}
			m := f.Mountpoint() + "/"
			var got []string
			for _, op := range rec.waitQuiet(len(want), 10*time.Second) {
				if op.Kind == capture.KindWrite && op.Path == m+"y/h" {
					continue // passthrough off: the write of no bytes at close
				}
				s := op.Kind.String() + " " + strings.TrimPrefix(op.Path, m)
				if op.OldPath != "" {
					s += " (from " + strings.TrimPrefix(op.OldPath, m) + ")"
				}
				got = append(got, s)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ops (-want +got):\n%s", diff)
			}
		})
	}
}
