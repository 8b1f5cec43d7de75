package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/semprop/semprop/internal/capture"
)

func TestParseStatus(t *testing.T) {
	tests := []struct {
		in   string
		name string
		tgid int32
		ok   bool
	}{
		{"Name:\tbash\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nPid:\t4243\n", "bash", 4242, true},
		{"Name:\tmy\\nproc\\\\x\nTgid:\t7\n", "my\nproc\\x", 7, true},
		{"Name:\twith space\nTgid:\t1\n", "with space", 1, true},
		{"Name:\tnotgid\n", "", 0, false},
		{"Tgid:\tabc\nName:\tx\n", "", 0, false},
		{"", "", 0, false},
	}
	for _, tt := range tests {
		name, tgid, ok := parseStatus([]byte(tt.in))
		if name != tt.name || tgid != tt.tgid || ok != tt.ok {
			t.Errorf("parseStatus(%q) = %q, %d, %v, want %q, %d, %v", tt.in, name, tgid, ok, tt.name, tt.tgid, tt.ok)
		}
	}
}

// TestProcCache resolves a thread to its process from a fake /proc, caches
// it for procTTL, and notices an exec after that.
func TestProcCache(t *testing.T) {
	root := t.TempDir()
	write := func(pid, name, body string) {
		t.Helper()
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("100", "status", "Name:\tworker\nTgid:\t99\n")
	write("99", "status", "Name:\tmain\nTgid:\t99\n")
	if err := os.Symlink("/usr/bin/prog", filepath.Join(root, "99", "exe")); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	c := newProcCache()
	c.root, c.now = root, func() time.Time { return now }

	got, ok := c.lookup(100)
	want := procInfo{tgid: 99, comm: "worker", exe: "/usr/bin/prog", at: now}
	if !ok || !cmp.Equal(got, want, cmp.AllowUnexported(procInfo{})) {
		t.Fatalf("lookup(100) = %+v, %v, want %+v, true", got, ok, want)
	}
	write("100", "status", "Name:\tafterexec\nTgid:\t99\n")
	now = now.Add(procTTL / 2)
	if got, _ := c.lookup(100); got.comm != "worker" {
		t.Errorf("within TTL: comm = %q, want cached %q", got.comm, "worker")
	}
	now = now.Add(procTTL)
	if got, _ := c.lookup(100); got.comm != "afterexec" {
		t.Errorf("after TTL: comm = %q, want %q", got.comm, "afterexec")
	}
	if _, ok := c.lookup(12345); ok {
		t.Errorf("lookup(unknown) ok = true, want false")
	}
	if _, ok := c.lookup(0); ok {
		t.Errorf("lookup(0) ok = true, want false")
	}
}

// TestProcCacheSelf resolves a real thread of this process.
func TestProcCacheSelf(t *testing.T) {
	c := newProcCache()
	got, ok := c.lookup(int32(os.Getpid()))
	if !ok || got.tgid != int32(os.Getpid()) || got.comm == "" || got.exe == "" {
		t.Errorf("lookup(self) = %+v, %v, want own pid, comm and exe", got, ok)
	}
}

func TestParseMountinfo(t *testing.T) {
	in := `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
85 22 0:53 / /tmp/with\040space rw,nosuid,nodev,relatime shared:44 - fuse.semprop semprop rw,user_id=0,group_id=0,default_permissions,allow_other
86 22 0:54 / /mnt/x rw - fuse otherfs rw
bad line
`
	want := []mountEntry{
		{majMin: "254:0", mountpoint: "/", fstype: "ext4", source: "/dev/vda"},
		{majMin: "0:53", mountpoint: "/tmp/with space", fstype: "fuse.semprop", source: "semprop"},
		{majMin: "0:54", mountpoint: "/mnt/x", fstype: "fuse", source: "otherfs"},
	}
	got := parseMountinfo([]byte(in))
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(mountEntry{})); diff != "" {
		t.Errorf("parseMountinfo mismatch (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		e          mountEntry
		fuse, ours bool
	}{
		{want[0], false, false}, {want[1], true, true}, {want[2], true, false},
		{mountEntry{fstype: "fuseblk"}, true, false},
	} {
		if tt.e.isFUSE() != tt.fuse || tt.e.isOurs() != tt.ours {
			t.Errorf("%+v: isFUSE, isOurs = %v, %v, want %v, %v", tt.e, tt.e.isFUSE(), tt.e.isOurs(), tt.fuse, tt.ours)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`: "/a b", `/tab\011x`: "/tab\tx", `/back\134slash`: `/back\slash`, `/plain`: "/plain", `/trail\04`: `/trail\04`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkNewOp is the per-op cost of the hooks: caller context (cached
// /proc lookup), path, counters, emit.
func BenchmarkNewOp(b *testing.B) {
	f := &FS{procs: newProcCache(), mount: "/mnt", sink: capture.SinkFunc(func(*capture.Op) {})}
	ctx := fuse.NewContext(context.Background(), &fuse.Caller{Owner: fuse.Owner{Uid: 1, Gid: 2}, Pid: uint32(os.Getpid())})
	b.ReportAllocs()
	for b.Loop() {
		op := f.newOp(ctx, capture.KindCreate)
		op.Path = f.mountPath("dir/file")
		f.emit(op)
	}
}

// BenchmarkProcLookupUncached is what a cache miss costs (a read of
// /proc/PID/status and a readlink).
func BenchmarkProcLookupUncached(b *testing.B) {
	c := newProcCache()
	pid := int32(os.Getpid())
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.read(pid); !ok {
			b.Fatal("read failed")
		}
	}
}

// TestInvalidateQueueFull: requests beyond the queue are dropped and
// counted, never blocking the caller; after stop everything is dropped.
func TestInvalidateQueueFull(t *testing.T) {
	f := &FS{inval: make(chan invalReq, 2), stop: make(chan struct{})}
	for range 5 {
		f.InvalidateContent("a")
	}
	if got := f.Stats(); got.InvalidationsQueued != 2 || got.InvalidationsDropped != 3 {
		t.Errorf("queued, dropped = %d, %d, want 2, 3", got.InvalidationsQueued, got.InvalidationsDropped)
	}
	close(f.stop)
	f.InvalidateEntry("", "b")
	f.InvalidateDelete("", "c")
	if got := f.Stats(); got.InvalidationsQueued != 2 || got.InvalidationsDropped != 5 {
		t.Errorf("after stop: queued, dropped = %d, %d, want 2, 5", got.InvalidationsQueued, got.InvalidationsDropped)
	}
}
