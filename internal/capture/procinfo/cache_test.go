package procinfo

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeProc is a /proc of processes set by the test.
type fakeProc map[int32]struct {
	id    Identity
	start int64
}

func (f fakeProc) read(pid int32) (Identity, int64, bool) {
	p, ok := f[pid]
	return p.id, p.start, ok
}

func (f fakeProc) readExec(tgid int32) (Identity, bool) {
	p, ok := f[tgid]
	return p.id, ok
}

func (f fakeProc) set(pid int32, start int64, comm, exe string) {
	f[pid] = struct {
		id    Identity
		start int64
	}{Identity{PID: pid, Comm: comm, Exe: exe, HasIDs: true}, start}
}

func fork(t int64, parent, child int32) *Event {
	return &Event{What: WhatFork, Time: t, ParentPID: parent, ParentTGID: parent, PID: child, TGID: child}
}
func execEv(t int64, pid int32) *Event { return &Event{What: WhatExec, Time: t, PID: pid, TGID: pid} }
func exitEv(t int64, pid int32) *Event { return &Event{What: WhatExit, Time: t, PID: pid, TGID: pid} }

func ident(pid int32, comm, exe string) Identity {
	return Identity{PID: pid, Comm: comm, Exe: exe, HasIDs: true}
}

// TestPIDReuse: two processes have pid 200 one after the other. An
// operation is attributed to the process that had the pid within its
// window; when both had it within the window there is no answer.
func TestPIDReuse(t *testing.T) {
	src := fakeProc{}
	c := newCache(src, nil)
	src.set(100, 0, "sh", "/bin/sh")
	// First process: fork at 1000, exec touch at 1100, exit at 2000.
	c.apply(fork(1000, 100, 200))
	src.set(200, 1000, "touch", "/bin/touch")
	c.apply(execEv(1100, 200))
	c.apply(exitEv(2000, 200))
	// Second: fork at 5000, exec ln at 5100; still running.
	c.apply(fork(5000, 100, 200))
	src.set(200, 5000, "ln", "/bin/ln")
	c.apply(execEv(5100, 200))
	delete(src, 200) // gone from /proc: only the cache knows

	for _, tc := range []struct {
		name   string
		w      Window
		want   Identity
		wantOK bool
	}{
		{"first, after its exec", Window{1500, 1600}, ident(200, "touch", "/bin/touch"), true},
		{"first, read late, before the reuse", Window{1500, 4000}, ident(200, "touch", "/bin/touch"), true},
		{"first, before its exec: the shell it forked from", Window{1010, 1050}, ident(200, "sh", "/bin/sh"), true},
		{"window holds the exec: the program after it", Window{1010, 1500}, ident(200, "touch", "/bin/touch"), true},
		{"second", Window{6000, 6100}, ident(200, "ln", "/bin/ln"), true},
		{"window holds both processes: no answer", Window{1500, 6000}, Identity{PID: 200}, false},
		{"between the two: no process had the pid", Window{3000, 4000}, Identity{PID: 200}, false},
		{"before the first", Window{100, 500}, Identity{PID: 200}, false},
	} {
		got, ok := c.Lookup(200, tc.w)
		if ok != tc.wantOK || !cmp.Equal(got, tc.want) {
			t.Errorf("%s: Lookup(200, %+v) = %+v, %v; want %+v, %v", tc.name, tc.w, got, ok, tc.want, tc.wantOK)
		}
	}
}

// TestPIDReuseProcRead: a pid the cache knows nothing of is read from
// /proc only if the process there held it throughout the window.
func TestPIDReuseProcRead(t *testing.T) {
	src := fakeProc{}
	c := newCache(src, nil)
	src.set(300, 500, "old", "/bin/old")
	if got, ok := c.Lookup(300, Window{1000, 2000}); !ok || got.Comm != "old" {
		t.Errorf("Lookup(started before the window) = %+v, %v; want old", got, ok)
	}
	src.set(301, 1500, "new", "/bin/new")
	if got, ok := c.Lookup(301, Window{1000, 2000}); ok {
		t.Errorf("Lookup(started within the window) = %+v, want no answer (an unseen process may have had the pid)", got)
	}
	// The process read from /proc exits and the pid is reused: the cache
	// knows both now.
	c.apply(exitEv(3000, 300))
	src.set(1, 0, "init", "/sbin/init")
	c.apply(fork(4000, 1, 300))
	if got, ok := c.Lookup(300, Window{2500, 2600}); !ok || got.Comm != "old" {
		t.Errorf("Lookup(300 before its exit) = %+v, %v; want old", got, ok)
	}
	if got, ok := c.Lookup(300, Window{4100, 4200}); !ok || got.Comm != "init" {
		t.Errorf("Lookup(300 after the reuse) = %+v, %v; want init's child", got, ok)
	}
	if got, ok := c.Lookup(300, Window{2500, 4200}); ok {
		t.Errorf("Lookup(300 across the reuse) = %+v, want no answer", got)
	}
}

// TestExitUnseen: a process the cache only saw exit blocks an answer for
// its window, even when /proc has a new process under the pid.
func TestExitUnseen(t *testing.T) {
	src := fakeProc{}
	c := newCache(src, nil)
	c.apply(exitEv(2000, 400))
	src.set(400, 3000, "new", "/bin/new")
	if got, ok := c.Lookup(400, Window{1500, 3500}); ok {
		t.Errorf("Lookup = %+v, want no answer", got)
	}
	src.set(1, 0, "init", "/sbin/init")
	c.apply(fork(3000, 1, 400))
	if got, ok := c.Lookup(400, Window{3100, 3200}); !ok || got.Comm != "init" {
		t.Errorf("Lookup(after the fork) = %+v, %v; want the parent's identity", got, ok)
	}
}

// TestExecLate: an exec whose process is gone before /proc is read leaves
// no identity for the time after it, rather than the parent's.
func TestExecLate(t *testing.T) {
	src := fakeProc{}
	c := newCache(src, nil)
	src.set(1, 0, "sh", "/bin/sh")
	c.apply(fork(1000, 1, 500))
	c.apply(execEv(1100, 500)) // not in src: gone
	c.apply(exitEv(1200, 500))
	if got, ok := c.Lookup(500, Window{1150, 1190}); ok {
		t.Errorf("Lookup = %+v, want no answer", got)
	}
	if s := c.Stats(); s.ExecLate != 1 {
		t.Errorf("ExecLate = %d, want 1", s.ExecLate)
	}
}

// TestCommAndIDs: comm, uid and gid changes apply from their time on.
func TestCommAndIDs(t *testing.T) {
	src := fakeProc{}
	c := newCache(src, nil)
	src.set(600, 0, "prog", "/bin/prog")
	c.apply(execEv(1000, 600))
	ev := &Event{What: WhatComm, Time: 2000, PID: 600, TGID: 600}
	copy(ev.Comm[:], "worker")
	c.apply(ev)
	c.apply(&Event{What: WhatUID, Time: 3000, PID: 600, TGID: 600, ID: 1000})
	for _, tc := range []struct {
		w    Window
		comm string
		uid  uint32
	}{
		{Window{1100, 1200}, "prog", 0},
		{Window{2100, 2200}, "worker", 0},
		{Window{3100, 3200}, "worker", 1000},
	} {
		got, ok := c.Lookup(600, tc.w)
		if !ok || got.Comm != tc.comm || got.UID != tc.uid {
			t.Errorf("Lookup(%+v) = %+v, %v; want comm %q uid %d", tc.w, got, ok, tc.comm, tc.uid)
		}
	}
}

// TestThreads: a thread's lookup finds its process.
func TestThreads(t *testing.T) {
	src := fakeProc{}
	c := newCache(src, nil)
	src.set(700, 0, "srv", "/bin/srv")
	c.apply(execEv(1000, 700))
	c.apply(&Event{What: WhatFork, Time: 1100, ParentPID: 700, ParentTGID: 700, PID: 701, TGID: 700})
	if got, ok := c.LookupThread(701); !ok || got.PID != 700 || got.Comm != "srv" {
		t.Errorf("LookupThread(701) = %+v, %v; want process 700", got, ok)
	}
}

// TestRetentionAndBound: exited processes go after the retention; the
// cache holds at most max processes.
func TestRetentionAndBound(t *testing.T) {
	src := fakeProc{}
	c := newCache(src, nil)
	c.max = 3
	src.set(1, 0, "init", "/sbin/init")
	c.apply(fork(1000, 1, 10))
	c.apply(exitEv(2000, 10))
	c.sweep(2000 + c.retention)
	if c.Len() != 2 {
		t.Errorf("Len after a sweep within the retention = %d, want 2", c.Len())
	}
	c.sweep(2001 + c.retention)
	if c.Len() != 1 {
		t.Errorf("Len after the retention = %d, want 1", c.Len())
	}
	for pid := int32(20); pid < 25; pid++ {
		c.apply(fork(3000, 1, pid))
	}
	if c.Len() != 3 || c.Stats().Evicted == 0 {
		t.Errorf("Len = %d, Evicted = %d; want 3, > 0", c.Len(), c.Stats().Evicted)
	}
	if _, ok := c.Lookup(24, Window{3100, 3200}); !ok {
		t.Errorf("the newest process was evicted")
	}
}

// TestForgottenGen: once a pid's oldest identities are dropped for room,
// a window reaching back to them has no answer.
func TestForgottenGen(t *testing.T) {
	src := fakeProc{}
	c := newCache(src, nil)
	src.set(1, 0, "init", "/sbin/init")
	for i := int64(0); i < maxGens+1; i++ {
		c.apply(fork(1000*(i+1), 1, 800))
		c.apply(exitEv(1000*(i+1)+500, 800))
	}
	if got, ok := c.Lookup(800, Window{1100, 1200}); ok {
		t.Errorf("Lookup(forgotten time) = %+v, want no answer", got)
	}
	if _, ok := c.Lookup(800, Window{5100, 5200}); !ok {
		t.Errorf("Lookup(latest) found nothing")
	}
}

// BenchmarkLookupHit is the cost of a lookup the cache answers (no
// listener: the catch-up is measured by BenchmarkLookupListener).
func BenchmarkLookupHit(b *testing.B) {
	src := fakeProc{}
	c := newCache(src, nil)
	src.set(900, 0, "prog", "/bin/prog")
	c.apply(execEv(1000, 900))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Lookup(900, Window{2000, 3000}); !ok {
			b.Fatal("miss")
		}
	}
}

func TestLookupHitAllocs(t *testing.T) {
	src := fakeProc{}
	c := newCache(src, nil)
	src.set(900, 0, "prog", "/bin/prog")
	c.apply(execEv(1000, 900))
	if n := testing.AllocsPerRun(100, func() { c.Lookup(900, Window{2000, 3000}) }); n != 0 {
		t.Errorf("Lookup allocates %v times, want 0", n)
	}
}

// TestLookupBehindListener: a shell forks at 1000 and the child execs
// touch at 1100, which creates a file at 1200; the lookup of that create
// finds the listener behind (the exec not applied yet). The cache holds
// only the fork's identity — the shell's — and must not answer with it:
// /proc answers instead (touch, still running), or nothing once touch
// is gone.
func TestLookupBehindListener(t *testing.T) {
	src := fakeProc{}
	c := newCache(src, nil)
	behind := false
	c.sync = func(int64) bool { return !behind }
	src.set(100, 0, "sh", "/bin/sh")
	c.apply(fork(1000, 100, 200))
	src.set(200, 1000, "touch", "/bin/touch") // exec at 1100, not applied
	w := Window{NotBefore: 1150, NotAfter: 1250}

	behind = true
	id, ok := c.Lookup(200, w)
	if want := ident(200, "touch", "/bin/touch"); !ok || id != want {
		t.Errorf("listener behind, touch alive: Lookup = %+v, %v; want %+v", id, ok, want)
	}
	delete(src, 200)
	if id, ok := c.Lookup(200, w); ok {
		t.Errorf("listener behind, touch gone: Lookup = %+v, want no answer (not the shell's identity)", id)
	}
	if st := c.Stats(); st.Unresolved != 1 {
		t.Errorf("Unresolved = %d, want 1", st.Unresolved)
	}

	// Caught up, the cache answers from the fork: the create was the
	// forked shell's as far as the cache knows (no exec applied).
	behind = false
	if id, ok := c.Lookup(200, w); !ok || id.Comm != "sh" {
		t.Errorf("caught up: Lookup = %+v, %v; want the fork's identity", id, ok)
	}
}
