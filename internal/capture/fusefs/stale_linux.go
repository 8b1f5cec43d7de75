package fusefs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	majMin     string // "0:53"
	mountpoint string
	fstype     string // "fuse.semprop"
	source     string // "semprop"
}

func (e mountEntry) isFUSE() bool {
	return e.fstype == "fuse" || e.fstype == "fuseblk" || strings.HasPrefix(e.fstype, "fuse.") ||
		strings.HasPrefix(e.fstype, "fuseblk.")
}

func (e mountEntry) isOurs() bool { return e.fstype == "fuse.semprop" || e.source == "semprop" }

// parseMountinfo parses the format of proc(5) /proc/PID/mountinfo.
func parseMountinfo(b []byte) []mountEntry {
	var out []mountEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// id parent maj:min root mountpoint options [optional...] - fstype source superoptions
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+2 >= len(f) {
			continue
		}
		out = append(out, mountEntry{
			majMin:     f[2],
			mountpoint: unescapeMount(f[4]),
			fstype:     f[sep+1],
			source:     unescapeMount(f[sep+2]),
		})
	}
	return out
}

// unescapeMount undoes the octal escapes (\040 for a space, …) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// topMount returns the last (topmost) mount at mp.
func topMount(mp string) (mountEntry, bool) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return mountEntry{}, false
	}
	var top mountEntry
	found := false
	for _, e := range parseMountinfo(b) {
		if e.mountpoint == mp {
			top, found = e, true
		}
	}
	return top, found
}

// mountConnID returns the fuse connection id (the device minor) of the mount
// at mp.
func mountConnID(mp string) (string, bool) {
	e, ok := topMount(mp)
	if !ok || !e.isFUSE() {
		return "", false
	}
	_, minor, ok := strings.Cut(e.majMin, ":")
	return minor, ok
}

// statTimeout is how long clearStale waits for a foreign fuse mount to
// answer a stat before calling it busy.
const statTimeout = 2 * time.Second

// clearStale detaches a dead fuse mount at mp: one whose stat fails with
// ENOTCONN (its server died). A live mount, of semprop or of another file
// system, is left alone: ErrMountpointBusy, naming the serving pid when a
// semprop server holds the mount's lock.
func clearStale(mp string, lg *slog.Logger) error {
	for range 8 { // mounts can be stacked; bounded
		e, ok := topMount(mp)
		if !ok || !e.isFUSE() {
			// No fuse mount in this namespace's table; a dead mount can
			// still show up as ENOTCONN (e.g. table unreadable).
			if err := statWithTimeout(mp); errors.Is(err, syscall.ENOTCONN) {
				lg.Warn("clearing stale mount (transport endpoint is not connected)", "mountpoint", mp)
				return detach(mp, "", lg)
			}
			return nil
		}
		// A mount is stale only when its server is gone: a semprop
		// server holds the mount's lock while it lives, and any dead
		// server's mount answers ENOTCONN. A hung one (the stat times
		// out) counts as live: never take a mount from a process that
		// may still come back.
		if e.isOurs() {
			if pid, held := lockHolder(mp); held {
				return busyErr(mp, pid)
			}
		}
		err := statWithTimeout(mp)
		if !errors.Is(err, syscall.ENOTCONN) {
			if e.isOurs() {
				return busyErr(mp, 0)
			}
			return fmt.Errorf("%w: %s (%s, %s)", ErrMountpointBusy, mp, e.fstype, e.source)
		}
		reason := "transport endpoint is not connected"
		lg.Warn("clearing stale fuse mount", "mountpoint", mp, "fstype", e.fstype, "source", e.source, "reason", reason)
		_, minor, _ := strings.Cut(e.majMin, ":")
		if err := detach(mp, minor, lg); err != nil {
			return err
		}
	}
	return fmt.Errorf("%w: %s: too many stacked mounts", ErrMountpointBusy, mp)
}

func detach(mp, connID string, lg *slog.Logger) error {
	abortConn(connID, lg)
	if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach stale mount %s: %w", mp, err)
	}
	return nil
}

// statWithTimeout stats mp, giving up after statTimeout: a hung fuse server
// would block the stat forever (that goroutine then stays blocked in the
// kernel until the mount is aborted; it holds nothing).
func statWithTimeout(mp string) error {
	ch := make(chan error, 1)
	go func() {
		var st syscall.Stat_t
		ch <- syscall.Stat(mp, &st)
	}()
	select {
	case err := <-ch:
		return err
	case <-time.After(statTimeout):
		return syscall.ETIMEDOUT
	}
}

// abortConn aborts fuse connection id through fusectl, if it is mounted, so
// a lazily detached mount stops at once instead of when its last user
// leaves.
func abortConn(id string, lg *slog.Logger) {
	if id == "" {
		return
	}
	p := "/sys/fs/fuse/connections/" + id + "/abort"
	if _, err := os.Stat(p); err != nil {
		return
	}
	if err := os.WriteFile(p, []byte("1"), 0); err != nil {
		lg.Warn("abort fuse connection", "id", id, "err", err)
	}
}
