package glob

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// refBudget bounds the reference matcher's work per input.
const refBudget = 200_000

// checkAgainstReference matches path against pattern with the compiled
// matcher and the reference, and fails when they disagree or when the
// compiled matcher works more than StepBound.
func checkAgainstReference(t *testing.T, pattern, path string) {
	t.Helper()
	p, err := Compile(pattern)
	if err != nil {
		return
	}
	got, steps := p.match(path)
	if !strings.HasPrefix(pattern, RegexpPrefix) {
		if bound := StepBound(pattern, path); steps > bound {
			t.Errorf("Compile(%q).Match(%q) took %d steps, bound %d", pattern, path, steps, bound)
		}
	}
	want, err := refMatch(pattern, path, refBudget)
	if errors.Is(err, errBudget) {
		return // the reference is exponential: no verdict
	}
	if err != nil {
		t.Fatalf("Compile(%q) succeeded but the reference failed: %v", pattern, err)
	}
	if got != want {
		t.Errorf("Compile(%q).Match(%q) = %v, reference %v", pattern, path, got, want)
	}
}

// checkTreeAgainstReference checks CompileTree: a path matches when the
// reference matches it or one of its ancestors (the path cut at a '/'),
// for some brace alternative; an alternative ending in '/' matches the
// directory Q when it matches Q+"/".
func checkTreeAgainstReference(t *testing.T, pattern, path string) {
	t.Helper()
	p, err := CompileTree(pattern)
	if err != nil {
		return
	}
	got, steps := p.match(path)
	if !strings.HasPrefix(pattern, RegexpPrefix) {
		// "**/" and "/**" added to each alternative.
		if bound := StepBound(pattern+"**/**/", path); steps > bound {
			t.Errorf("CompileTree(%q).Match(%q) took %d steps, bound %d", pattern, path, steps, bound)
		}
	}
	// Each brace alternative on its own: one ending in '/' names a
	// directory Q by matching Q+"/".
	alts := []string{pattern}
	if !strings.HasPrefix(pattern, RegexpPrefix) {
		alts, _ = expandBraces(pattern)
	}
	want := false
	for _, alt := range alts {
		for i := len(path); i >= 0 && !want; i-- {
			if i < len(path) && path[i] != '/' {
				continue
			}
			q := path[:i]
			if strings.HasSuffix(alt, "/") && !strings.HasPrefix(alt, RegexpPrefix) {
				q += "/"
			}
			m, err := refMatch(alt, q, refBudget)
			if errors.Is(err, errBudget) {
				return
			}
			if err != nil {
				t.Fatalf("CompileTree(%q) succeeded but the reference failed on %q: %v", pattern, alt, err)
			}
			want = m
		}
	}
	if got != want {
		t.Errorf("CompileTree(%q).Match(%q) = %v, reference (path or an ancestor) %v", pattern, path, got, want)
	}
}

// randomPattern and randomPath draw from a small alphabet so that matches
// are frequent.
func randomPattern(r *rand.Rand) string {
	atoms := []string{"a", "b", "ab", "*", "?", "**", "[ab]", "[!a]", `\*`, "a*", "*b", "{a,b}", "{a,*/b}", ""}
	var b strings.Builder
	if r.IntN(2) == 0 {
		b.WriteByte('/')
	}
	n := r.IntN(6)
	for i := range n {
		if i > 0 {
			b.WriteByte('/')
		}
		for range 1 + r.IntN(2) {
			b.WriteString(atoms[r.IntN(len(atoms))])
		}
	}
	return b.String()
}

func randomPath(r *rand.Rand) string {
	segs := []string{"a", "b", "ab", "ba", "", "*", "aa", "ü"}
	var b strings.Builder
	if r.IntN(3) > 0 {
		b.WriteByte('/')
	}
	n := 1 + r.IntN(7)
	for i := range n {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(segs[r.IntN(len(segs))])
	}
	return b.String()
}

// TestAgreesWithReference compares the linear matcher with the old one on
// random small patterns and paths, for Compile and CompileTree.
func TestAgreesWithReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for range n {
		pat, path := randomPattern(r), randomPath(r)
		checkAgainstReference(t, pat, path)
		checkTreeAgainstReference(t, pat, path)
		if t.Failed() {
			return
		}
	}
}

// TestStepBound checks the step bound on the worst shapes: many "**",
// many "*" in one segment, deep and long subjects.
func TestStepBound(t *testing.T) {
	deep := "/" + strings.Repeat("a/", 200)
	long := "/" + strings.Repeat("a", 2000)
	for _, tc := range []struct{ pattern, path string }{
		{"/**/a/**/a/**/a/**/a/**/b", deep},
		{strings.Repeat("**/a/", 30) + "b", deep},
		{"/" + strings.Repeat("*a", 40) + "b", long},
		{"/" + strings.Repeat("*[a]", 40) + "?b", long},
		{"**/" + strings.Repeat("*a", 10) + "b/**", deep + long},
		{"/{**/a/**/b,**/a/**/a/**/c}", deep},
	} {
		p := MustCompile(tc.pattern)
		ok, steps := p.match(tc.path)
		if ok {
			t.Errorf("Compile(%q).Match(len %d) = true, want false", tc.pattern, len(tc.path))
		}
		if bound := StepBound(tc.pattern, tc.path); steps > bound {
			t.Errorf("Compile(%q).Match(len %d) took %d steps, bound %d", tc.pattern, len(tc.path), steps, bound)
		}
	}
	// The step count grows linearly with the subject for a fixed pattern.
	p := MustCompile("/**/a/**/a/**/a/**/a/**/b")
	_, s1 := p.match("/" + strings.Repeat("a/", 100))
	_, s2 := p.match("/" + strings.Repeat("a/", 400))
	if s2 > 5*s1 {
		t.Errorf("steps for 400 segments = %d, for 100 = %d: want about 4×", s2, s1)
	}
}

// FuzzMatch checks the linear matcher against the reference and its step
// bound, for any pattern and path, for Compile and CompileTree.
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"/data/**/*.md", "/data/a/b.md"},
		{"**/.ssh/**", "/home/u/.ssh/id_rsa"},
		{"/**/a/**/a/**/a/**/b", "/a/a/a/a/a/a/a/a/a/a/a/a/a/a"},
		{"/a/[!a-z]?/**/x*y", "/a/Zq/b/c/xzzy"},
		{"{a,b{c,d}}/**/x", "bd/q/x"},
		{`/a/\*/**`, "/a/*/b"},
		{"*.key", "/etc/tls/server.key"},
		{"/**/*a*a*a*b", "/x/aaaaaaaaaaaaaaaaaaaa"},
		{"re:^/x$", "/x"},
		{"**", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		if len(pattern) > 256 || len(path) > 1024 {
			return
		}
		checkAgainstReference(t, pattern, path)
		checkTreeAgainstReference(t, pattern, path)
	})
}
