package glob

import (
	"errors"
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

// TestCompileIsBounded: brace expansion rescanned the pattern once per
// group, quadratic in its length (30,000 "{a}" took over 10 s): patterns
// with many brace groups or of unreasonable length are refused quickly.
func TestCompileIsBounded(t *testing.T) {
	for _, pat := range []string{
		strings.Repeat("{a}", 30000),
		strings.Repeat("{", 20000) + "a" + strings.Repeat("}", 20000),
		strings.Repeat("{a,", 20000) + "b" + strings.Repeat("}", 20000),
		"/" + strings.Repeat("a/", 100000),
	} {
		start := time.Now()
		_, err := Compile(pat)
		if d := time.Since(start); d > time.Second {
			t.Errorf("Compile(%.12q… %d bytes) took %v", pat, len(pat), d)
		}
		if !errors.Is(err, ErrTooComplex) {
			t.Errorf("Compile(%.12q… %d bytes) error = %v, want ErrTooComplex", pat, len(pat), err)
		}
	}
	// Reasonable patterns with braces still compile.
	for _, pat := range []string{"/data/{a,b}/{c,d}/**/*.{md,txt}", "{a,{b,{c,d}}}"} {
		if _, err := Compile(pat); err != nil {
			t.Errorf("Compile(%q) = %v", pat, err)
		}
	}
}
