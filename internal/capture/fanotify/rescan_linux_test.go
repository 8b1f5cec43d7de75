package fanotify

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/semprop/semprop/internal/capture"
)

// TestRescan changes a tree behind the tracker's back and checks that a
// rescan reports exactly the differences, children deleted before their
// parents and parents created before their children, then a summary.
func TestRescan(t *testing.T) {
	root := t.TempDir()
	p := func(s string) string { return filepath.Join(root, s) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(p("keep/sub"), 0o755))
	must(os.MkdirAll(p("gone/deep"), 0o755))
	must(os.WriteFile(p("gone/deep/f"), []byte("x"), 0o644))
	must(os.WriteFile(p("same"), []byte("same"), 0o644))
	must(os.WriteFile(p("grows"), []byte("a"), 0o644))
	must(os.WriteFile(p("deleted"), []byte("d"), 0o644))
	must(os.WriteFile(p("replaced"), []byte("r"), 0o644))
	must(os.Link(p("replaced"), p("holder"))) // keeps the inode number from being reused
	must(os.Mkdir(p("dir2file"), 0o755))
	must(os.WriteFile(p("dir2file/child"), nil, 0o644))

	rec := &recorder{}
	var c counters
	tr := newTracker(root, rec, &c, time.Second, testLogger(t))
	tr.buildIndex()

	must(os.RemoveAll(p("gone")))
	must(os.WriteFile(p("grows"), []byte("abc"), 0o644))
	must(os.Remove(p("deleted")))
	must(os.Remove(p("replaced")))
	must(os.WriteFile(p("replaced"), nil, 0o644)) // a new inode
	must(os.RemoveAll(p("dir2file")))
	must(os.WriteFile(p("dir2file"), []byte("now a file"), 0o644))
	must(os.MkdirAll(p("new/inner"), 0o755))
	must(os.WriteFile(p("new/inner/n"), []byte("nn"), 0o644))
	must(os.Symlink("same", p("keep/sub/link")))

	tr.rescan()
	var got []opView
	for _, op := range rec.snapshot() {
		got = append(got, view(root, op))
	}
	r := func(k capture.Kind, path string, dir bool, size int64) opView {
		return opView{Kind: k, Path: path, IsDir: dir, Size: size, Rescan: true}
	}
	want := []opView{
		// the walk, in name order, parents first
		r(capture.KindDelete, "dir2file/child", false, 0),
		r(capture.KindRmdir, "dir2file", true, 0),
		r(capture.KindCreate, "dir2file", false, 0),
		r(capture.KindWrite, "dir2file", false, 10),
		r(capture.KindWrite, "grows", false, 3),
		r(capture.KindMkdir, "new", true, 0),
		r(capture.KindDelete, "replaced", false, 0),
		r(capture.KindCreate, "replaced", false, 0),
		{Kind: capture.KindSymlink, Path: "keep/sub/link", Target: "same", Rescan: true},
		r(capture.KindMkdir, "new/inner", true, 0),
		r(capture.KindCreate, "new/inner/n", false, 0),
		r(capture.KindWrite, "new/inner/n", false, 2),
		// then what the walk did not find, deepest first
		r(capture.KindDelete, "gone/deep/f", false, 0),
		r(capture.KindRmdir, "gone/deep", true, 0),
		r(capture.KindRmdir, "gone", true, 0),
		r(capture.KindDelete, "deleted", false, 0),
		{Kind: capture.KindRescan, Path: ".", IsDir: true},
	}
	// The deletes of vanished paths come deepest first: sort the expected
	// tail the same way the rescan does (reverse path order).
	tail := want[12:16]
	slices.SortFunc(tail, func(a, b opView) int { return -cmpString(a.Path, b.Path) })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rescan ops (-want +got):\n%s", diff)
	}
	if sum := rec.snapshot()[len(got)-1]; sum.Count != int64(len(want)-1) {
		t.Errorf("rescan Count = %d, want %d", sum.Count, len(want)-1)
	}

	// A second rescan of an unchanged tree finds nothing.
	n := rec.len()
	tr.rescan()
	if ops := rec.snapshot()[n:]; len(ops) != 1 || ops[0].Kind != capture.KindRescan || ops[0].Count != 0 {
		t.Errorf("second rescan: %d ops, want only a summary with Count 0", len(ops))
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
