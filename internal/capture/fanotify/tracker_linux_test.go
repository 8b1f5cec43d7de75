package fanotify

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/internal/capture"
)

// realFID returns the identifier of path as fanotify would report it.
func realFID(t *testing.T, path string) []byte {
	t.Helper()
	fh, _, err := unix.NameToHandleAt(unix.AT_FDCWD, path, atHandleFID)
	if err != nil {
		t.Fatalf("name_to_handle_at %s: %v", path, err)
	}
	b := make([]byte, fsidLen+handleHdrLen, fsidLen+handleHdrLen+fh.Size())
	binary.NativeEndian.PutUint32(b[fsidLen:], uint32(fh.Size()))
	binary.NativeEndian.PutUint32(b[fsidLen+4:], uint32(fh.Type()))
	return append(b, fh.Bytes()...)
}

// TestApplyMerged checks the rules of doc.go, "Merged records", one record
// at a time: the state before (indexed or not), after (the object at the
// name, gone, or a successor there) and the mask decide the ops.
func TestApplyMerged(t *testing.T) {
	const (
		gone      = iota // the name is free
		same             // the record's object is at the name
		successor        // another object is at the name
	)
	C, D, W, A := capture.KindCreate, capture.KindDelete, capture.KindWrite, capture.KindAttrib
	for _, tc := range []struct {
		name                                   string
		indexed                                bool
		state                                  int
		create, delete, modify, closeW, attrib bool
		dirty                                  bool // an earlier record had MODIFY
		inGone                                 bool // a rescan reported the path gone
		want                                   []capture.Kind
	}{
		{"create+delete, new, gone", false, gone, true, true, false, false, false, false, false, []capture.Kind{C, D}},
		{"create+delete, known, back", true, same, true, true, false, false, false, false, false, []capture.Kind{D, C}},
		{"create+delete, new, there", false, same, true, true, false, false, false, false, false, []capture.Kind{C, D, C}},
		{"create+delete, known, gone", true, gone, true, true, false, false, false, false, false, []capture.Kind{D, C, D}},
		{"storm cycle folded", false, gone, true, true, true, true, false, false, false, []capture.Kind{C, W, D}},
		{"storm cycle, name reused", false, successor, true, true, true, true, false, false, false, []capture.Kind{C, W, D}},
		{"create write close chmod", false, same, true, false, true, true, true, false, false, []capture.Kind{C, W, A}},
		{"write then delete", true, gone, false, true, true, true, false, false, false, []capture.Kind{W, D}},
		{"close without write", true, same, false, false, false, true, false, false, false, nil},
		{"close after earlier modify", true, same, false, false, false, true, false, true, false, []capture.Kind{W}},
		{"modify alone", true, same, false, false, true, false, false, false, false, nil},
		{"create of an indexed object (dup)", true, same, true, false, false, false, false, false, false, nil},
		{"create, successor at the name", false, successor, true, false, false, false, false, false, false, []capture.Kind{C}},
		{"delete the rescan reported", false, gone, false, true, false, false, false, false, true, nil},
		{"delete not indexed", false, gone, false, true, false, false, false, false, false, []capture.Kind{D}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			rec := &recorder{}
			var c counters
			tr := newTracker(dir, rec, &c, time.Second, testLogger(t))
			if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			fid := realFID(t, path)
			if tc.indexed {
				var st unix.Stat_t
				unix.Lstat(path, &st)
				tr.index[path] = entryOf(&st)
			}
			switch tc.state {
			case gone:
				os.Remove(path)
			case successor:
				hold := filepath.Join(dir, "hold") // keep the inode alive: no reuse
				os.Link(path, hold)
				os.Remove(path)
				os.WriteFile(path, []byte("yy"), 0o644)
			}
			if tc.dirty {
				tr.dirty[string(fid)] = struct{}{}
			}
			if tc.inGone {
				tr.gone = map[string]struct{}{path: {}}
			}
			tr.apply(&change{path: path, create: tc.create, delete: tc.delete, modify: tc.modify,
				closeWrite: tc.closeW, attrib: tc.attrib, fid: fid}, nil)
			var got []capture.Kind
			for _, op := range rec.snapshot() {
				got = append(got, op.Kind)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ops (-want +got):\n%s", diff)
			}
			// The index afterwards holds the path only if the object is there.
			_, indexed := tr.index[path]
			if wantIndexed := tc.state == same; indexed != wantIndexed {
				t.Errorf("indexed afterwards = %v, want %v", indexed, wantIndexed)
			}
		})
	}
}
