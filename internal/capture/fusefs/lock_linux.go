package fusefs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A serving mount holds an exclusive flock(2) on a small file named after
// its mount point, under /run/semprop (or the temporary directory when /run
// is not writable). The kernel drops the lock when the process dies, however
// it dies, so a lock held means a live server, and /proc/locks names its
// pid: Mount refuses a mount point whose lock is held instead of treating
// the live mount there as a leftover. The file is opened read-only and
// never written, so it costs no close-write record on a watched file
// system.

// lockDir is where the mount locks live.
func lockDir() string {
	for _, d := range []string{"/run/semprop", filepath.Join(os.TempDir(), "semprop-run")} {
		if err := os.MkdirAll(d, 0o755); err == nil {
			return d
		}
	}
	return os.TempDir()
}

func lockPath(mp string) string {
	sum := sha256.Sum256([]byte(mp))
	return filepath.Join(lockDir(), "mount-"+hex.EncodeToString(sum[:10])+".lock")
}

// lockMount takes the lock of mp for this process. It fails with
// ErrMountpointBusy when another server holds it.
func lockMount(mp string) (*os.File, error) {
	p := lockPath(mp)
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("mount lock %s: %w", p, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, busyErr(mp, readPid(p))
		}
		return nil, fmt.Errorf("mount lock %s: %w", p, err)
	}
	return f, nil
}

// lockHolder reports the pid of the live server holding mp's lock, if any.
func lockHolder(mp string) (pid int, held bool) {
	p := lockPath(mp)
	f, err := os.Open(p)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return readPid(p), errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return 0, false
}

// readPid finds the pid holding the flock on file p in /proc/locks
// (0 when it cannot tell).
func readPid(p string) int {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return 0
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0
	}
	// "1: FLOCK  ADVISORY  WRITE 4242 00:1f:1234 0 EOF": maj:min in hex.
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) >= 6 && f[1] == "FLOCK" && f[5] == want {
			if n, err := strconv.Atoi(f[4]); err == nil {
				return n
			}
		}
	}
	return 0
}

func busyErr(mp string, pid int) error {
	if pid > 0 {
		return fmt.Errorf("%w: %s: served by pid %d", ErrMountpointBusy, mp, pid)
	}
	return fmt.Errorf("%w: %s: served by a live process", ErrMountpointBusy, mp)
}

// unlockMount releases the lock (closing the file drops it).
func unlockMount(f *os.File) {
	if f != nil {
		f.Close()
	}
}
