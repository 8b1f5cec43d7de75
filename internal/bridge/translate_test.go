package bridge

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
)

func TestTranslate(t *testing.T) {
	at := time.Unix(1_800_000_000, 5).UTC()
	for _, tc := range []struct {
		name string
		op   capture.Op
		want event.Event
	}{
		{
			name: "fuse write",
			op: capture.Op{Kind: capture.KindWrite, Boundary: event.BoundaryFUSE, Time: at, Path: "/m/a",
				Known: event.HasPID | event.HasTID | event.HasUID | event.HasGID | event.HasInode | event.HasBytes | event.HasOffset | event.HasLength,
				PID:   42, TID: 43, UID: 1000, GID: 100, Comm: "cp", Exe: "/bin/cp", Inode: 7, Bytes: 10, Offset: 0, Length: 10, Raw: FuseFlush},
			want: event.Event{Type: "fs.write", Subject: "/m/a", Time: at, Boundary: event.BoundaryFUSE,
				Boundaries: event.Boundaries(0).Add(event.BoundaryFUSE),
				Context: event.Context{Known: event.HasPID | event.HasTID | event.HasUID | event.HasGID | event.HasInode | event.HasBytes | event.HasOffset | event.HasLength,
					PID: 42, TID: 43, UID: 1000, GID: 100, Comm: "cp", Exe: "/bin/cp", Inode: 7, Bytes: 10, Length: 10}},
		},
		{
			name: "kernel rename of a dir",
			op: capture.Op{Kind: capture.KindRename, Boundary: event.BoundaryKernel, Time: at, Path: "/b/new", OldPath: "/b/old",
				IsDir: true, Known: event.HasPID | event.HasMode, PID: 9, Mode: 0o40755},
			want: event.Event{Type: "fs.rename", Subject: "/b/new", Time: at, Boundary: event.BoundaryKernel,
				Boundaries: event.Boundaries(0).Add(event.BoundaryKernel),
				Context:    event.Context{Known: event.HasPID | event.HasMode, PID: 9, Mode: 0o40755, OldPath: "/b/old"},
				Attrs:      []event.Attr{{Key: AttrIsDir, Value: "true"}}},
		},
		{
			name: "kind from raw mask",
			op:   capture.Op{Boundary: event.BoundaryKernel, Path: "/b/d", Raw: FanCreate | FanOnDir, IsDir: true},
			want: event.Event{Type: "fs.mkdir", Subject: "/b/d", Boundary: event.BoundaryKernel,
				Boundaries: event.Boundaries(0).Add(event.BoundaryKernel)},
		},
		{
			name: "kind from raw fuse opcode",
			op:   capture.Op{Boundary: event.BoundaryFUSE, Path: "/m/l", Target: "x", Raw: FuseSymlink},
			want: event.Event{Type: "fs.symlink", Subject: "/m/l", Boundary: event.BoundaryFUSE,
				Boundaries: event.Boundaries(0).Add(event.BoundaryFUSE), Context: event.Context{Target: "x"}},
		},
		{
			name: "overflow",
			op:   capture.Op{Kind: capture.KindOverflow, Boundary: event.BoundaryKernel, Path: "/w", Count: 16384},
			want: event.Event{Type: "fs.overflow", Subject: "/w", Boundary: event.BoundaryKernel,
				Boundaries: event.Boundaries(0).Add(event.BoundaryKernel), Attrs: []event.Attr{{Key: AttrCount, Value: "16384"}}},
		},
		{
			name: "rescan create",
			op:   capture.Op{Kind: capture.KindCreate, Boundary: event.BoundaryKernel, Path: "/w/x", Rescan: true, Known: event.HasSize | event.HasInode, Size: 3, Inode: 4},
			want: event.Event{Type: "fs.create", Subject: "/w/x", Boundary: event.BoundaryKernel, Flags: event.FlagRescan,
				Boundaries: event.Boundaries(0).Add(event.BoundaryKernel),
				Context:    event.Context{Known: event.HasSize | event.HasInode, Size: 3, Inode: 4}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Reuse a dirty destination: Translate must overwrite everything.
			dst := event.Event{Seq: 99, Source: "x", Priority: event.PriorityCritical, Data: []byte("{}"),
				Attrs: make([]event.Attr, 1, 4), Context: event.Context{Known: event.HasSize, Size: 1, OldPath: "z"}}
			Translate(&tc.op, &dst)
			if len(dst.Attrs) == 0 {
				dst.Attrs = nil
			}
			if diff := cmp.Diff(tc.want, dst); diff != "" {
				t.Errorf("Translate(%s) mismatch (-want +got):\n%s", tc.name, diff)
			}
		})
	}
}

// TestTranslateAllocs pins the hot path at zero allocations.
func TestTranslateAllocs(t *testing.T) {
	op := capture.Op{Kind: capture.KindRename, Boundary: event.BoundaryKernel, Path: "/b/new", OldPath: "/b/old", IsDir: true,
		Known: event.HasPID | event.HasInode, PID: 1, Inode: 2, Count: 42}
	var dst event.Event
	Translate(&op, &dst)
	if n := testing.AllocsPerRun(100, func() { Translate(&op, &dst) }); n != 0 {
		t.Errorf("Translate allocates %v times per call, want 0", n)
	}
}
