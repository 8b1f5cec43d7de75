package bridge

import (
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
)

var fuzzPaths = [...]string{"a", "d", "d/b", "d/c", "e", "e/f", "g", ""}

// decodeOps turns fuzz bytes into a timed op stream, four bytes an op:
// boundary and kind; path, old path and actor; time step; inode and size.
func decodeOps(data []byte) (ops []*capture.Op, at []time.Duration) {
	var t time.Duration
	for len(data) >= 4 {
		b0, b1, b2, b3 := data[0], data[1], data[2], data[3]
		data = data[4:]
		k := capture.Kind(b0>>1)%capture.KindRescan + 1
		op := &capture.Op{Kind: k, Boundary: event.BoundaryKernel}
		root := "/b/"
		if b0&1 == 1 {
			op.Boundary, root = event.BoundaryFUSE, "/m/"
		}
		op.Path = root + fuzzPaths[b1&7]
		if k == capture.KindRename || k == capture.KindLink {
			op.OldPath = root + fuzzPaths[(b1>>3)&7]
		}
		switch b1 >> 6 {
		case 0:
			op.PID = 100 // the daemon: a shadow
		case 1:
			op.PID = 42
		case 2:
			op.PID = 43
		}
		if b1>>6 != 3 {
			op.Known |= event.HasPID
		}
		if b3&8 != 0 {
			op.Inode, op.Known = uint64(b3&7)+1, op.Known|event.HasInode
		}
		if b3&16 != 0 {
			op.Bytes, op.Known = 1, op.Known|event.HasBytes
		}
		op.Size, op.Known = int64(b3>>5), op.Known|event.HasSize
		t += time.Duration(b2) * 500 * time.Microsecond
		ops, at = append(ops, op), append(at, t)
	}
	return ops, at
}

// FuzzCorrelate feeds arbitrary op streams from both boundaries through the
// correlator (repeat filter off) and checks its accounting: every FUSE op is
// published exactly once, every shadow is merged, absorbed or an orphan,
// kernel events are only the ones counted as kernel-only, and nothing is
// left held after the windows pass.
func FuzzCorrelate(f *testing.F) {
	f.Add([]byte{3, 0x40, 0, 8, 2, 0x00, 1, 8})                // fuse create, its shadow
	f.Add([]byte{2, 0x00, 0, 8, 3, 0x40, 200, 8})              // shadow, then fuse op after the window
	f.Add([]byte{4, 0x41, 0, 9, 5, 0x41, 1, 9, 4, 0x01, 1, 9}) // passthrough write pairing
	f.Add([]byte{7, 0x0a, 0, 0, 6, 0x0a, 1, 0, 2, 0x82, 1, 0}) // renames and a direct op
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, at := decodeOps(data)
		var st counters
		var fuseEvents, kernelEvents int
		base := time.Unix(1_800_000_000, 0)
		c := newCorrelator(config{window: 50 * time.Millisecond, maxWindow: 500 * time.Millisecond, selfPID: 100, backing: "/b", mount: "/m",
			bridged: true, holdWrites: true, invalidate: true, srcKernel: "k", srcFUSE: "f"}, &st, -1,
			func(ev *event.Event) {
				if ev.Boundary == event.BoundaryFUSE {
					fuseEvents++
				} else {
					kernelEvents++
				}
			}, func(InvalKind, string) {})
		nFUSE, nShadow := 0, 0
		for i, op := range ops {
			now := base.Add(at[i])
			for {
				d, ok := c.nextDeadline()
				if !ok || d.After(now) {
					break
				}
				c.expire(d)
			}
			if op.Boundary == event.BoundaryFUSE {
				nFUSE++
			} else if op.Known&event.HasPID != 0 && op.PID == 100 {
				nShadow++
			}
			c.add(op, now)
			c.expire(now)
		}
		c.flush()
		if want := nFUSE; fuseEvents != want {
			t.Errorf("published %d FUSE events for %d FUSE ops", fuseEvents, nFUSE)
		}
		if got := int(st.kernelOnly.Load()); kernelEvents != got {
			t.Errorf("published %d kernel events, counted %d kernel-only", kernelEvents, got)
		}
		if got := int(st.merged.Load() + st.absorbed.Load() + st.orphans.Load()); got != nShadow {
			t.Errorf("merged+absorbed+orphans = %d, want the %d shadows", got, nShadow)
		}
		if c.pending != 0 || len(c.order) != 0 || len(c.pathQ) != 0 || len(c.fuseByPath) != 0 ||
			len(c.fuseByIno) != 0 || len(c.kernByPath) != 0 || len(c.kernByIno) != 0 {
			t.Errorf("after flush: pending %d order %d paths %d waiting %d/%d/%d/%d, want all 0",
				c.pending, len(c.order), len(c.pathQ), len(c.fuseByPath), len(c.fuseByIno), len(c.kernByPath), len(c.kernByIno))
		}
	})
}
