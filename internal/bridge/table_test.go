package bridge

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/semprop/semprop/internal/capture"
)

// TestTable checks the translation table against testdata/table.txt, a
// readable dump of all three directions (regenerate with -update), and that
// every row resolves to itself through the lookup functions.
func TestTable(t *testing.T) {
	var b strings.Builder
	for _, r := range KernelTable {
		fmt.Fprintf(&b, "kernel %-24s %#010x -> %s\n", r.Name, r.Mask|dirBit(r.Dir), r.Kind)
	}
	for _, r := range FUSETable {
		fmt.Fprintf(&b, "fuse   %-24s %10d -> %s\n", r.Name, r.Opcode, r.Kind)
	}
	for k := capture.KindCreate; k <= capture.KindRescan; k++ {
		r := Invalidation(k)
		fmt.Fprintf(&b, "inval  %-24s old:%-7s path:%s\n", k, r.OldPath, r.Path)
	}
	got := b.String()
	const file = "testdata/table.txt"
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("translation table changed (-want +got):\n%s", diff)
	}
	for _, r := range KernelTable {
		if got := KernelKind(r.Mask | dirBit(r.Dir)); got != r.Kind {
			t.Errorf("KernelKind(%s) = %v, want %v", r.Name, got, r.Kind)
		}
	}
	for _, r := range FUSETable {
		if got := FUSEKind(r.Opcode); got != r.Kind {
			t.Errorf("FUSEKind(%s) = %v, want %v", r.Name, got, r.Kind)
		}
	}
}

func dirBit(dir bool) uint64 {
	if dir {
		return FanOnDir
	}
	return 0
}

func TestKernelKindMerged(t *testing.T) {
	for _, tc := range []struct {
		mask uint64
		want capture.Kind
	}{
		{FanModify | FanCloseWrite, capture.KindWrite},
		{FanCreate | FanDelete, capture.KindCreate}, // the kernel boundary resolves these by stat
		{FanCreate | FanAttrib, capture.KindCreate},
		{FanAttrib | FanOnDir, capture.KindAttrib},
		{FanRename | FanOnDir, capture.KindRename},
		{FanQOverflow, capture.KindOverflow},
		{FanDeleteSelf, capture.KindNone},
		{0, capture.KindNone},
		{FanOnDir, capture.KindNone},
	} {
		if got := KernelKind(tc.mask); got != tc.want {
			t.Errorf("KernelKind(%#x) = %v, want %v", tc.mask, got, tc.want)
		}
	}
	for _, op := range []uint64{0, 1, 15, 63, 64, 1 << 40} {
		if got := FUSEKind(op); got != capture.KindNone {
			t.Errorf("FUSEKind(%d) = %v, want none", op, got)
		}
	}
	if got := Invalidation(capture.KindOverflow); got.Path != InvalNone || got.OldPath != InvalNone {
		t.Errorf("Invalidation(overflow) = %+v, want none", got)
	}
}
