package procinfo

import (
	"encoding/binary"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Exec records: the executables processes open to exec them, from a
// fanotify group that asks for FAN_OPEN_EXEC on the file systems that
// hold programs. The kernel queues the record during execve(2), before the
// connector's exec event, with the file itself (the group gets a
// descriptor of it when it reads the record): unlike /proc/PID, it is
// still there when the process is gone. So when an exec's /proc was read
// too late (Stats.ExecLate), the identity comes from the records instead
// (Stats.ExecRecords): exe is the program (the interpreter of a script),
// comm the base name of the file exec'd (at most 15 bytes, as the kernel
// sets it; a program exec'd through a symbolic link has the link's name
// as its comm, which the records cannot tell), and the uid and gid are
// those the process had before its exec unless the file is set-user-ID
// or set-group-ID.

// execRoots are the file systems whose execs are recorded: those that hold
// programs. A mark on a file system covers all of it; marking one twice
// is harmless.
var execRoots = []string{"/", "/usr", "/bin", "/sbin", "/usr/local", "/opt"}

// maxExecPending bounds the pids with exec records not yet used.
const maxExecPending = 4096

// execOpen is what the records say about one pid's latest execve.
type execOpen struct {
	paths  []string // files opened for exec, in order
	setid  bool     // the first is set-user-ID or set-group-ID
	readAt int64    // when the last record was read
}

// execRecords reads the group. It is owned by the listener goroutine.
type execRecords struct {
	fd   int
	buf  []byte
	link []byte
	m    map[int32]*execOpen
}

// openExecRecords sets the group up; nil when the kernel refuses.
func openExecRecords() *execRecords {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_LARGEFILE)
	if err != nil {
		return nil
	}
	marked := false
	for _, p := range execRoots {
		if unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, unix.FAN_OPEN_EXEC, unix.AT_FDCWD, p) == nil {
			marked = true
		}
	}
	if !marked {
		unix.Close(fd)
		return nil
	}
	return &execRecords{fd: fd, buf: make([]byte, 32<<10), link: make([]byte, unix.PathMax), m: make(map[int32]*execOpen)}
}

func (x *execRecords) close() {
	if x != nil {
		unix.Close(x.fd)
	}
}

// drain reads every queued record.
func (x *execRecords) drain() {
	if x == nil {
		return
	}
	now := Now()
	for {
		n, err := unix.Read(x.fd, x.buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return
		}
		for b := x.buf[:n]; len(b) >= 24; {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			if l < 24 || l > len(b) {
				break
			}
			mask := binary.NativeEndian.Uint64(b[8:])
			fd := int(int32(binary.NativeEndian.Uint32(b[16:])))
			pid := int32(binary.NativeEndian.Uint32(b[20:]))
			if fd >= 0 {
				if mask&unix.FAN_OPEN_EXEC != 0 && pid > 0 {
					x.note(pid, fd, now)
				}
				unix.Close(fd)
			}
			b = b[l:]
		}
	}
}

// note records that pid opened the file fd for exec.
func (x *execRecords) note(pid int32, fd int, now int64) {
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), x.link)
	if err != nil || n <= 0 || n >= len(x.link) {
		return
	}
	p := string(x.link[:n])
	e := x.m[pid]
	if e == nil || now-e.readAt > int64(DefaultRetention) {
		if len(x.m) >= maxExecPending {
			clear(x.m) // failed execs leave records nobody takes
		}
		e = &execOpen{}
		x.m[pid] = e
	}
	if len(e.paths) == 0 || isELFInterpreter(e.paths[len(e.paths)-1]) {
		e.setid = false // a new exec begins
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
			e.setid = true
		}
	}
	if len(e.paths) < 8 {
		e.paths = append(e.paths, p)
	}
	e.readAt = now
}

// take returns the identity pid's latest exec records give, and forgets
// them; ok is false without records. The caller fills in the ids.
func (x *execRecords) take(pid int32) (comm, exe string, setid, ok bool) {
	if x == nil {
		return "", "", false, false
	}
	e := x.m[pid]
	if e == nil {
		x.drain() // the record may have come after the last drain
		if e = x.m[pid]; e == nil {
			return "", "", false, false
		}
	}
	delete(x.m, pid)
	// Records of an earlier exec of the pid may precede the latest's:
	// each exec opens its file, a script's interpreter, then the loader.
	// The latest exec is the last run of files that ends with a loader
	// (or the end).
	start := 0
	for i := 0; i < len(e.paths)-1; i++ {
		if isELFInterpreter(e.paths[i]) && !isELFInterpreter(e.paths[i+1]) {
			start = i + 1
		}
	}
	paths := e.paths[start:]
	for _, p := range paths {
		if !isELFInterpreter(p) {
			exe = p // the last one that is not the loader: a script's interpreter
		}
	}
	if exe == "" {
		return "", "", false, false
	}
	comm = paths[0][strings.LastIndexByte(paths[0], '/')+1:]
	if len(comm) > 15 {
		comm = comm[:15]
	}
	return comm, exe, e.setid, true
}

// forget drops pid's records (a new process has the pid).
func (x *execRecords) forget(pid int32) {
	if x != nil {
		delete(x.m, pid)
	}
}

// isELFInterpreter reports whether p is a dynamic loader, which execve
// opens after the program (ld-linux-x86-64.so.2, ld-musl-x86_64.so.1, …).
func isELFInterpreter(p string) bool {
	base := p[strings.LastIndexByte(p, '/')+1:]
	return strings.HasPrefix(base, "ld-") || strings.HasPrefix(base, "ld.so") || strings.HasPrefix(base, "ld64.so")
}
