package filter

import (
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/filter/glob"
)

// matchBound is the wall-clock bound per fuzz input of path matching: far
// above what a linear matcher needs for a 4 KiB input, far below what the
// old exponential one took. The exact bound (a step count) is checked in
// package glob.
const matchBound = 2 * time.Second

// FuzzPathMatch feeds patterns and paths to Glob and Deny: matching is
// bounded in time, Glob agrees with glob.Compile, and Deny denies what
// the pattern matches and everything below it.
func FuzzPathMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"**/.ssh", "/home/u/.ssh/id_rsa"},
		{"**/.ssh/**", "/home/u/.ssh"},
		{"/**/a/**/a/**/a/**/a/**/b", "/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a"},
		{"*.key", "/a/x.key/b"},
		{"{/srv/a,**/*.pem}", "/srv/a/../b"},
		{"re:^/var/.*/keys$", "/var/lib/keys/k"},
		{"/etc/secrets/", "/etc//secrets/./x"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, p string) {
		if len(pattern) > 512 || len(p) > 4096 {
			return
		}
		g, err := glob.Compile(pattern)
		if err != nil {
			if _, err := Deny(pattern); err == nil {
				t.Fatalf("Deny(%q) accepts a pattern glob.Compile refuses", pattern)
			}
			return
		}
		gf, err := Glob("subject", pattern)
		if err != nil {
			t.Fatalf("Glob(subject, %q): %v", pattern, err)
		}
		d, err := Deny(pattern)
		if err != nil {
			t.Fatalf("Deny(%q): %v", pattern, err)
		}
		ev := &event.Event{Type: "fs.write", Subject: p}
		below := &event.Event{Type: "fs.write", Subject: p + "/x"}
		start := time.Now()
		want := g.Match(p)
		got := gf.Match(ev)
		denied := !d.Match(ev)
		deniedBelow := !d.Match(below)
		if el := time.Since(start); el > matchBound {
			t.Errorf("matching %q against %q took %v", pattern, p, el)
		}
		if got != want {
			t.Errorf("Glob(subject, %q).Match(%q) = %v, glob says %v", pattern, p, got, want)
		}
		if p != "" && want && !denied {
			t.Errorf("Deny(%q) lets %q through, which the pattern matches", pattern, p)
		}
		if p != "" && denied && !deniedBelow {
			t.Errorf("Deny(%q) denies %q but not %q below it", pattern, p, p+"/x")
		}
	})
}
