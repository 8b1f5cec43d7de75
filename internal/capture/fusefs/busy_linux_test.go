package fusefs

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLiveSempropMountInOtherProcess: a live semprop mount served by
// another process is not a leftover: Mount refuses it and leaves it
// serving.
func TestLiveSempropMountInOtherProcess(t *testing.T) {
	requireFUSE(t)
	backing, mnt := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(backing, "x"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startHangingMount(t, "semprop", backing, mnt)
	f, err := Mount(Options{Backing: t.TempDir(), Mountpoint: mnt, Sink: &recorder{}, Logger: testLogger(t)})
	if err == nil {
		unmountT(t, f)
	}
	if !errors.Is(err, ErrMountpointBusy) {
		t.Errorf("Mount over a live semprop mount: %v, want ErrMountpointBusy", err)
	}
	if got := sh(t, "cat "+mnt+"/x"); got != "x\n" {
		t.Errorf("the first mount no longer serves: cat = %q, want %q", got, "x\n")
	}
}

// TestLiveSempropMountSameProcess: a second Mount at the mount point of a
// live one is refused with the serving pid, and the first still captures.
func TestLiveSempropMountSameProcess(t *testing.T) {
	requireFUSE(t)
	rec := &recorder{}
	first := mountT(t, Options{Sink: rec})
	if pid, held := lockHolder(first.Mountpoint()); !held || pid != os.Getpid() {
		t.Errorf("lockHolder = %d, %v; want %d, true", pid, held, os.Getpid())
	}
	_, err := Mount(Options{Backing: t.TempDir(), Mountpoint: first.Mountpoint(), Sink: &recorder{}, Logger: testLogger(t)})
	if !errors.Is(err, ErrMountpointBusy) {
		t.Fatalf("second Mount: %v, want ErrMountpointBusy", err)
	}
	if want := "served by pid " + strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("second Mount: %q, want it to say %q", err, want)
	}
	sh(t, "echo hi > "+first.Mountpoint()+"/after")
	if ops := rec.waitQuiet(1, 5e9); len(ops) == 0 {
		t.Error("the first mount captured nothing after the refused second Mount")
	}
}

// TestCreateMountpoint: a missing mount point is created only when asked,
// after every check, and removed again when the mount then fails.
func TestCreateMountpoint(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	mp := filepath.Join(dir, "a", "b")
	if _, err := Mount(Options{Backing: t.TempDir(), Mountpoint: mp, Sink: &recorder{}, Logger: testLogger(t)}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Mount on a missing mount point without CreateMountpoint: %v, want ErrNotExist", err)
	}
	// Refused for overlap: nothing may be created inside the backing tree.
	backing := t.TempDir()
	inside := filepath.Join(backing, "m")
	if _, err := Mount(Options{Backing: backing, Mountpoint: inside, CreateMountpoint: true, Sink: &recorder{}, Logger: testLogger(t)}); !errors.Is(err, ErrOverlap) {
		t.Fatalf("Mount inside the backing tree: %v, want ErrOverlap", err)
	}
	if _, err := os.Lstat(inside); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused Mount left %s behind (%v)", inside, err)
	}
	f := mountT(t, Options{Mountpoint: mp, CreateMountpoint: true, Sink: &recorder{}})
	if f.Mountpoint() != mp {
		t.Errorf("Mountpoint() = %q, want %q", f.Mountpoint(), mp)
	}
	if st, err := os.Stat(mp); err != nil || !st.IsDir() {
		t.Errorf("mount point not created: %v", err)
	}
}
