package action

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/google/go-cmp/cmp"
)

// TestSnapshotDiskFull: with the snapshot store on a full file system
// (a 1 MiB tmpfs), the snapshot fails with ENOSPC, leaves no partial
// object or manifest, and the actions done before it are rolled back.
func TestSnapshotDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	f := newFixture(t)
	store := filepath.Join(t.TempDir(), "tiny")
	os.MkdirAll(store, 0o755)
	if err := unix.Mount("tmpfs", store, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(store, unix.MNT_DETACH) })
	var err error
	if f.env.Snapshots, err = OpenStore(store); err != nil {
		t.Fatal(err)
	}
	small := f.file(t, "small", "tiny file")
	big := f.file(t, "big", strings.Repeat("x", 3<<20))
	set := mustRules(t, `
rules:
  - name: r
    when: 'true'
    actions:
      - {type: tag, path: '`+small+`', name: flag, value: x}
      - {type: snapshot, paths: '`+small+` `+big+`'}
`)
	publish(t, f.s.m, matchEvent("r", "", nil, 1))
	x := f.executor(t, set)
	runUntil(t, x, f.s)
	recs := records(t, f.log.Dir())
	if diff := cmp.Diff([]string{"intent:tag", "done:tag", "intent:snapshot", "failed:snapshot", "rollback:tag", "rolledback:tag", "match:rolledback"}, kinds(recs)); diff != "" {
		t.Fatalf("audit (-want +got):\n%s", diff)
	}
	if !strings.Contains(recs[3].Error, "no space left") {
		t.Errorf("snapshot error = %q, want ENOSPC", recs[3].Error)
	}
	if _, ok := xattr(t, small, "user.flag"); ok {
		t.Error("tag not rolled back")
	}
	tmp, _ := os.ReadDir(filepath.Join(store, "tmp"))
	ms, _ := f.env.Snapshots.List()
	if len(tmp) != 0 || len(ms) != 0 {
		t.Errorf("left behind: %d temporary files, %d manifests", len(tmp), len(ms))
	}
	var st unix.Statfs_t
	unix.Statfs(store, &st)
	if free := st.Bfree * uint64(st.Bsize); free < 900<<10 {
		t.Errorf("%d bytes free after the failure, want the space back", free)
	}
}
