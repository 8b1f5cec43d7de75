package procinfo

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeExecs are exec records set by the test.
type fakeExecs map[int32][3]string // comm, exe, "setid" or ""

func (f fakeExecs) take(pid int32) (string, string, bool, bool) {
	r, ok := f[pid]
	delete(f, pid)
	return r[0], r[1], r[2] == "setid", ok
}
func (f fakeExecs) forget(pid int32) { delete(f, pid) }

// TestExecLateFromRecords: a process gone before its exec's /proc was read
// gets comm and exe from the exec records, and the ids it had before
// (not for a set-user-ID program); a zombie keeps its /proc comm and ids.
func TestExecLateFromRecords(t *testing.T) {
	src := fakeProc{}
	c := newCache(src, nil)
	execs := fakeExecs{}
	c.execs = execs
	src.set(100, 0, "sh", "/bin/sh")
	src[100] = struct {
		id    Identity
		start int64
	}{Identity{PID: 100, Comm: "sh", Exe: "/bin/sh", UID: 1000, GID: 1000, HasIDs: true}, 0}

	c.apply(fork(1000, 100, 200))
	execs[200] = [3]string{"touch", "/usr/bin/touch", ""}
	c.apply(execEv(1100, 200)) // not in src: gone before /proc was read
	c.apply(fork(1000, 100, 201))
	execs[201] = [3]string{"passwd", "/usr/bin/passwd", "setid"}
	c.apply(execEv(1100, 201))
	c.apply(fork(1000, 100, 202))
	src[202] = struct {
		id    Identity
		start int64
	}{Identity{PID: 202, Comm: "ln", UID: 1000, GID: 1000, HasIDs: true}, 1000} // a zombie: no exe
	execs[202] = [3]string{"ln", "/usr/bin/ln", ""}
	c.apply(execEv(1100, 202))
	c.apply(fork(1000, 100, 203)) // no records either
	c.apply(execEv(1100, 203))

	w := Window{NotBefore: 1200, NotAfter: 1300}
	for _, tc := range []struct {
		pid  int32
		want Identity
		ok   bool
	}{
		{200, Identity{PID: 200, Comm: "touch", Exe: "/usr/bin/touch", UID: 1000, GID: 1000, HasIDs: true}, true},
		{201, Identity{PID: 201, Comm: "passwd", Exe: "/usr/bin/passwd"}, true},
		{202, Identity{PID: 202, Comm: "ln", Exe: "/usr/bin/ln", UID: 1000, GID: 1000, HasIDs: true}, true},
		{203, Identity{PID: 203}, false},
	} {
		got, ok := c.Lookup(tc.pid, w)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Lookup(%d) = %+v, %v; want %+v, %v", tc.pid, got, ok, tc.want, tc.ok)
		}
	}
	if s := c.Stats(); s.ExecLate != 4 || s.ExecRecords != 3 {
		t.Errorf("stats %+v, want 4 late execs, 3 from records", s)
	}
}

// TestExecRecordsTake: the latest exec of a pid is the last run of files
// that ends with the loader; a script's exe is its interpreter.
func TestExecRecordsTake(t *testing.T) {
	for _, tc := range []struct {
		paths     []string
		comm, exe string
		ok        bool
	}{
		{[]string{"/usr/bin/touch", "/usr/lib64/ld-linux-x86-64.so.2"}, "touch", "/usr/bin/touch", true},
		{[]string{"/home/u/build.sh", "/usr/bin/dash", "/usr/lib64/ld-linux-x86-64.so.2"}, "build.sh", "/usr/bin/dash", true},
		{[]string{"/usr/bin/sh", "/lib/ld-linux.so.2", "/usr/bin/a-very-long-program-name", "/lib/ld-linux.so.2"}, "a-very-long-pro", "/usr/bin/a-very-long-program-name", true},
		{[]string{"/lib/ld-linux.so.2"}, "", "", false},
	} {
		x := &execRecords{m: map[int32]*execOpen{7: {paths: tc.paths}}}
		comm, exe, _, ok := x.take(7)
		if comm != tc.comm || exe != tc.exe || ok != tc.ok {
			t.Errorf("take(%v) = %q %q %v, want %q %q %v", tc.paths, comm, exe, ok, tc.comm, tc.exe, tc.ok)
		}
		if _, left := x.m[7]; left {
			t.Errorf("take(%v) left the records", tc.paths)
		}
	}
}

// TestExecRecordsKernel: the group records a real exec, with the
// program's path, though the process is gone when the records are read.
func TestExecRecordsKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: fanotify needs root")
	}
	x := openExecRecords()
	if x == nil {
		t.Skip("skipping: the kernel refuses a FAN_OPEN_EXEC mark here")
	}
	t.Cleanup(x.close)
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := int32(cmd.Process.Pid)
	want, _ := filepath.EvalSymlinks("/bin/true")
	deadline := time.Now().Add(5 * time.Second)
	for {
		x.drain()
		if x.m[pid] != nil || time.Now().After(deadline) {
			break
		}
		unix.Poll([]unix.PollFd{{Fd: int32(x.fd), Events: unix.POLLIN}}, 10)
	}
	comm, exe, _, ok := x.take(pid)
	if !ok || comm != filepath.Base(want) || exe != want {
		t.Errorf("records of /bin/true (pid %d): %q %q %v, want %q %q", pid, comm, exe, ok, filepath.Base(want), want)
	}
}
