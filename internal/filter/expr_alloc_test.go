package filter

import (
	"testing"

	"github.com/semprop/semprop/event"
)

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

// TestExprVMEnvironment: the VM's environment holds only what the
// expression reads, set on every evaluation (no value of an earlier event
// is left for a later one).
func TestExprVMEnvironment(t *testing.T) {
	with := &event.Event{Type: "fs.write", Subject: "/a", Attrs: []event.Attr{{Key: "tenant", Value: "x"}}}
	with.Context.SetSize(100)
	with.Context.SetUID(1000)
	without := &event.Event{Type: "fs.write", Subject: "/b"}
	for _, tc := range []struct {
		src        string
		with, bare bool
	}{
		{`size > 10`, true, false},
		{`size == -1`, false, true},
		{`uid == 1000 && path == "/a"`, true, false},
		{`attrs["tenant"] == "x"`, true, false},
		{`comm == "" && attrs["tenant"] == "x" && size > 0`, true, false},
	} {
		f, err := Expr(tc.src, NoLowering())
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		// Alternating, so that a pooled environment is reused.
		for range 3 {
			if got := f.Match(with); got != tc.with {
				t.Errorf("%s on the event with size, uid and attrs: %v, want %v", tc.src, got, tc.with)
			}
			if got := f.Match(without); got != tc.bare {
				t.Errorf("%s on the bare event: %v, want %v", tc.src, got, tc.bare)
			}
		}
	}
}
