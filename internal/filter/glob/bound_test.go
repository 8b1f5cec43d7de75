package glob

import (
	"strings"
	"testing"
	"time"
)

// TestPathologicalPatternIsBounded: several "**" against a deep subject
// used to backtrack exponentially (4 groups of "/**/a" took 28 s). Matching
// must finish in bounded time; the wall-clock bound is generous (the old
// matcher did not finish in minutes), the step bound below is the real
// check.
func TestPathologicalPatternIsBounded(t *testing.T) {
	subject := "/" + strings.Repeat("a/", 200)
	for _, pat := range []string{
		"/**/a/**/a/**/a/**/a/**/b",
		"**/a/**/a/**/a/**/a/**/a/**/a/**/b",
		"/**/a*/**/a*a/**/*a/**/[a]/**/b/**",
		"{/**/a/**/a/**/a/**/b,/**/a/**/a/**/a/**/a/**/c}",
	} {
		p := MustCompile(pat)
		done := make(chan bool, 1)
		start := time.Now()
		go func() { done <- p.Match(subject) }()
		select {
		case got := <-done:
			if got {
				t.Errorf("Compile(%q).Match(200 × a/) = true, want false", pat)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("Compile(%q).Match(200 × a/) took %v, want well under 1s", pat, d)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Compile(%q).Match(200 × a/) still running after 5s", pat)
		}
	}
}
