package fanotify

import (
	"bytes"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture/procinfo"
)

const (
	maxProcCache = 4096
	// procRecheck is how long a verified cache entry is trusted before its
	// start time is compared again. Reusing a pid needs the kernel to cycle
	// through pid_max pids (4M by default), which takes far longer.
	procRecheck = 50 * time.Millisecond
)

// procInfo is the cached context of one process.
type procInfo struct {
	start   uint64 // start time in clock ticks since boot: tells pid reuse apart
	checked time.Time
	a       actor
}

// procCache maps pids to comm and exe. With a shared procinfo.Cache
// (Options.Procs) it asks that, for the window the record was queued in;
// else it reads /proc itself, detecting pid reuse by comparing the process
// start time from /proc/PID/stat. It is owned by the reader goroutine.
type procCache struct {
	m   map[int32]*procInfo
	c   *counters
	fds *fdReserve
	buf []byte

	shared  *procinfo.Cache
	win     *procinfo.Window // the watcher's: when the records being processed were queued
	scratch actor            // what lookup returns with shared: valid until the next lookup
}

func newProcCache(fds *fdReserve, c *counters) *procCache {
	return &procCache{m: make(map[int32]*procInfo), c: c, fds: fds, buf: make([]byte, 4096)}
}

// read reads the start of a small /proc file into pc.buf, with a descriptor
// from the reserve if need be.
func (pc *procCache) read(path string) ([]byte, bool) {
	fd, err := pc.fds.open(func() (int, error) {
		return openAt(unix.AT_FDCWD, path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil, false
	}
	n, err := unix.Read(fd, pc.buf)
	pc.fds.close(fd)
	if err != nil || n <= 0 {
		return nil, false
	}
	return pc.buf[:n], true
}

// lookup returns the actor for pid. A process that has exited leaves Comm
// and Exe empty, with PID set.
func (pc *procCache) lookup(pid int32, now time.Time) *actor {
	if pid <= 0 {
		return &actor{known: event.HasPID, pid: pid}
	}
	if pc.shared != nil {
		return pc.lookupShared(pid)
	}
	pi := pc.m[pid]
	if pi != nil && now.Sub(pi.checked) < procRecheck {
		pc.c.procHits.Add(1)
		return &pi.a
	}
	start, comm, ok := pc.stat(pid)
	if !ok {
		delete(pc.m, pid)
		pc.c.procMisses.Add(1)
		return &actor{known: event.HasPID, pid: pid}
	}
	if pi != nil && pi.start == start {
		pi.checked = now
		pc.c.procHits.Add(1)
		return &pi.a
	}
	pc.c.procMisses.Add(1)
	if len(pc.m) >= maxProcCache {
		clear(pc.m)
	}
	pi = &procInfo{start: start, checked: now, a: actor{known: event.HasPID, pid: pid, comm: comm}}
	pi.a.exe = readlink("/proc/" + strconv.Itoa(int(pid)) + "/exe")
	if uid, gid, ok := pc.ids(pid); ok {
		pi.a.uid, pi.a.gid = uid, gid
		pi.a.known |= event.HasUID | event.HasGID
	}
	pc.m[pid] = pi
	return &pi.a
}

// lookupShared asks the shared cache. The actor it returns is valid until
// the next lookup (the tracker copies it into the ops at once).
func (pc *procCache) lookupShared(pid int32) *actor {
	id, ok := pc.shared.Lookup(pid, *pc.win)
	pc.scratch = actor{known: event.HasPID, pid: pid}
	if !ok {
		pc.c.procMisses.Add(1)
		return &pc.scratch
	}
	pc.c.procHits.Add(1)
	pc.scratch.comm, pc.scratch.exe = id.Comm, id.Exe
	if id.HasIDs {
		pc.scratch.uid, pc.scratch.gid = id.UID, id.GID
		pc.scratch.known |= event.HasUID | event.HasGID
	}
	return &pc.scratch
}

// ids reads the effective uid and gid from /proc/PID/status. They are read
// once per process (a later setuid is not followed).
func (pc *procCache) ids(pid int32) (uid, gid uint32, ok bool) {
	b, ok := pc.read("/proc/" + strconv.Itoa(int(pid)) + "/status")
	if !ok {
		return 0, 0, false
	}
	return parseStatusIDs(b)
}

// parseStatusIDs extracts the effective uid and gid (the second value of
// the "Uid:" and "Gid:" lines) from /proc/PID/status.
func parseStatusIDs(b []byte) (uid, gid uint32, ok bool) {
	var gotU, gotG bool
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		var dst *uint32
		switch {
		case bytes.HasPrefix(line, []byte("Uid:")):
			dst, gotU = &uid, true
		case bytes.HasPrefix(line, []byte("Gid:")):
			dst, gotG = &gid, true
		default:
			continue
		}
		f := bytes.Fields(line[4:])
		if len(f) < 2 {
			return 0, 0, false
		}
		v, err := strconv.ParseUint(string(f[1]), 10, 32)
		if err != nil {
			return 0, 0, false
		}
		*dst = uint32(v)
	}
	return uid, gid, gotU && gotG
}

// stat reads comm and the start time from /proc/PID/stat.
func (pc *procCache) stat(pid int32) (start uint64, comm string, ok bool) {
	b, ok := pc.read("/proc/" + strconv.Itoa(int(pid)) + "/stat")
	if !ok {
		return 0, "", false
	}
	return parseStat(b)
}

// parseStat is procinfo.ParseStat, start first.
func parseStat(b []byte) (start uint64, comm string, ok bool) {
	comm, start, ok = procinfo.ParseStat(b)
	return start, comm, ok
}
