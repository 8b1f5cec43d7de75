package filter

import "testing"

// TestExprVMAllocs: an expression that runs on the VM allocates nothing
// per event unless it reads extension attributes; its results are those
// of the same expression lowered to native predicates.
func TestExprVMAllocs(t *testing.T) {
	evs := sampleEvents(t)
	for _, src := range []string{
		`type == "fs.write"`,
		`size >= 1 && size <= 1048576`,
		`type startsWith "fs." && comm != "rsync" && uid == 1000`,
		`len(subject) > 3 && pid != 7 || mode == 0 && oldpath endsWith "id_rsa"`,
		`seq >= 0 && inode >= -1 && boundary in ["fuse", "kernel"]`,
	} {
		vmf, err := Expr(src, NoLowering())
		if err != nil {
			t.Fatal(err)
		}
		low, err := Expr(src)
		if err != nil {
			t.Fatal(err)
		}
		for i, ev := range evs {
			if a, b := vmf.Match(ev), low.Match(ev); a != b {
				t.Errorf("%s on event %d: vm %v, lowered %v", src, i, a, b)
			}
		}
		if raceEnabled {
			continue
		}
		if n := testing.AllocsPerRun(200, func() { vmf.Match(evs[0]) }); n != 0 {
			t.Errorf("%s: %.1f allocations per evaluation on the VM", src, n)
		}
	}
}
