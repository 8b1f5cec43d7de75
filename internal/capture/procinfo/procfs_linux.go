package procinfo

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of /proc/PID/stat's start time (USER_HZ, 100 on every
// Linux architecture).
const userHZ = 100

// Now returns the CLOCK_MONOTONIC time in nanoseconds: the clock of the
// connector's timestamps, and of Window.
func Now() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// procfs reads identities from /proc.
type procfs struct{ root string }

var _ source = procfs{}

func (p procfs) file(pid int32, name string, buf []byte) ([]byte, bool) {
	fd, err := unix.Open(p.root+"/"+strconv.Itoa(int(pid))+"/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	n, err := unix.Read(fd, buf)
	unix.Close(fd)
	if err != nil || n <= 0 {
		return nil, false
	}
	return buf[:n], true
}

// read reads /proc/PID/{status,stat,exe}. Comm comes from stat, unescaped
// (status escapes newlines and backslashes).
func (p procfs) read(pid int32) (Identity, int64, bool) {
	var buf [1536]byte
	b, ok := p.file(pid, "status", buf[:])
	if !ok {
		return Identity{}, 0, false
	}
	tgid, uid, gid, ok := parseStatus(b)
	if !ok {
		return Identity{}, 0, false
	}
	b, ok = p.file(tgid, "stat", buf[:])
	if !ok {
		return Identity{}, 0, false
	}
	comm, ticks, ok := ParseStat(b)
	if !ok {
		return Identity{}, 0, false
	}
	id := Identity{PID: tgid, Comm: comm, UID: uid, GID: gid, HasIDs: true}
	id.Exe, _ = os.Readlink(p.root + "/" + strconv.Itoa(int(tgid)) + "/exe")
	return id, startedBy(ticks), true
}

// readExec reads the process tgid that has just exec'd: the exe link
// first, since it goes first when a process exits (with its memory), while
// stat and status stay readable until it is reaped.
func (p procfs) readExec(tgid int32) (Identity, bool) {
	base := p.root + "/" + strconv.Itoa(int(tgid))
	exe, _ := os.Readlink(base + "/exe")
	var buf [1536]byte
	b, ok := p.file(tgid, "stat", buf[:])
	if !ok {
		return Identity{PID: tgid, Exe: exe}, false
	}
	comm, _, ok := ParseStat(b)
	if !ok {
		return Identity{PID: tgid, Exe: exe}, false
	}
	id := Identity{PID: tgid, Comm: comm, Exe: exe}
	if b, ok = p.file(tgid, "status", buf[:]); ok {
		var t int32
		if t, id.UID, id.GID, ok = parseStatus(b); ok && t == tgid {
			id.HasIDs = true
		}
	}
	return id, true
}

// startedBy turns a start time in clock ticks since boot (CLOCK_BOOTTIME)
// into a CLOCK_MONOTONIC time by which the process had started.
func startedBy(ticks uint64) int64 {
	var boot, mono unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot)
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	return int64(ticks+1)*(1e9/userHZ) - (boot.Nano() - mono.Nano())
}
