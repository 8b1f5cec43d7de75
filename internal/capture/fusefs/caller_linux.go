package fusefs

import (
	"bytes"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/internal/capture/procinfo"
)

// procTTL bounds how long a thread's process identity is trusted. FUSE
// reports thread ids; turning one into a process id, comm and exe costs a
// read of /proc/TID/status and a readlink, so the answer is cached. A
// shorter TTL notices exec(2) (a new comm/exe under the same pid) sooner;
// pid reuse within the TTL would need pid_max forks in that time.
const procTTL = 250 * time.Millisecond

// procCacheMax bounds the cache; when full it is cleared.
const procCacheMax = 4096

type procInfo struct {
	tgid int32
	comm string
	exe  string
	at   time.Time
}

// procCache maps thread ids to their process. With a shared
// procinfo.Cache (Options.Procs) it asks that, which follows execs and
// exits as they happen; else it reads /proc and caches the answer per
// thread for procTTL. It is safe for concurrent use.
type procCache struct {
	root   string // "/proc"; tests may point elsewhere
	now    func() time.Time
	shared *procinfo.Cache

	mu sync.Mutex
	m  map[int32]procInfo
}

func newProcCache() *procCache {
	return &procCache{root: "/proc", now: time.Now, m: make(map[int32]procInfo)}
}

// lookup returns the process of thread tid, or ok=false when /proc no longer
// knows it.
func (c *procCache) lookup(tid int32) (procInfo, bool) {
	if tid <= 0 {
		return procInfo{}, false
	}
	if c.shared != nil {
		id, ok := c.shared.LookupThread(tid)
		if !ok {
			return procInfo{}, false
		}
		return procInfo{tgid: id.PID, comm: id.Comm, exe: id.Exe}, true
	}
	now := c.now()
	c.mu.Lock()
	pi, ok := c.m[tid]
	c.mu.Unlock()
	if ok && now.Sub(pi.at) < procTTL {
		return pi, true
	}
	pi, ok = c.read(tid)
	if !ok {
		return procInfo{}, false
	}
	pi.at = now
	c.mu.Lock()
	if len(c.m) >= procCacheMax {
		clear(c.m)
	}
	c.m[tid] = pi
	c.mu.Unlock()
	return pi, true
}

// read resolves tid from /proc without the cache.
func (c *procCache) read(tid int32) (procInfo, bool) {
	base := c.root + "/" + strconv.FormatInt(int64(tid), 10)
	// Name and Tgid are among the first lines; one short read suffices.
	fd, err := unix.Open(base+"/status", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return procInfo{}, false
	}
	var buf [512]byte
	n, err := unix.Read(fd, buf[:])
	unix.Close(fd)
	if err != nil || n <= 0 {
		return procInfo{}, false
	}
	name, tgid, ok := parseStatus(buf[:n])
	if !ok {
		return procInfo{}, false
	}
	pi := procInfo{tgid: tgid, comm: name}
	if tgid != tid {
		base = c.root + "/" + strconv.FormatInt(int64(tgid), 10)
	}
	if exe, err := os.Readlink(base + "/exe"); err == nil {
		pi.exe = exe
	}
	return pi, true
}

// parseStatus extracts Name and Tgid from the text of /proc/PID/status.
// Name is comm with the kernel's escapes ("\n" for a newline, "\\" for a
// backslash) undone.
func parseStatus(b []byte) (name string, tgid int32, ok bool) {
	var haveName, haveTgid bool
	for len(b) > 0 && !(haveName && haveTgid) {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		switch {
		case bytes.HasPrefix(line, []byte("Name:")):
			name = unescapeComm(string(bytes.TrimLeft(line[5:], " \t")))
			haveName = true
		case bytes.HasPrefix(line, []byte("Tgid:")):
			v, err := strconv.ParseInt(string(bytes.TrimSpace(line[5:])), 10, 32)
			if err != nil || v <= 0 {
				return "", 0, false
			}
			tgid, haveTgid = int32(v), true
		}
	}
	if !haveName || !haveTgid {
		return "", 0, false
	}
	return name, tgid, true
}

func unescapeComm(s string) string {
	if !bytesContainsBackslash(s) {
		return s
	}
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case 'n':
				out = append(out, '\n')
				i++
				continue
			case '\\':
				out = append(out, '\\')
				i++
				continue
			}
		}
		out = append(out, s[i])
	}
	return string(out)
}

func bytesContainsBackslash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			return true
		}
	}
	return false
}
