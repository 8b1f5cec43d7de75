package glob

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"testing"

	"github.com/semprop/semprop/internal/filter/datadriven"

	"github.com/semprop/semprop/internal/cputime"
)

// TestDataDriven runs testdata/glob.txt: "match PATTERN" followed by paths,
// one result per path. Regenerate with -update.
func TestDataDriven(t *testing.T) {
	datadriven.RunFile(t, "testdata/glob.txt", func(t *testing.T, c *datadriven.Case) string {
		if c.Cmd != "match" {
			t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
		}
		src := strings.Join(c.Args, " ")
		p, err := Compile(src)
		if err != nil {
			return "error: " + err.Error()
		}
		var b strings.Builder
		for _, in := range c.Input {
			fmt.Fprintf(&b, "%q %v\n", in, p.Match(in))
		}
		return b.String()
	})
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		want    error
	}{
		{"/a/[", ErrBadPattern},
		{"/a/[]", ErrBadPattern},
		{"/a/[z-a]", ErrBadPattern},
		{`/a/b\`, ErrBadPattern},
		{"/a/{b,c", ErrBadPattern},
		{"/a/b}", ErrBadPattern},
		{"re:(", ErrBadPattern},
		{"{a,b}{c,d}{e,f}{g,h}{i,j}{k,l}{m,n}", ErrTooComplex},
	} {
		_, err := Compile(tc.pattern)
		if !errors.Is(err, tc.want) {
			t.Errorf("Compile(%q) error = %v, want %v", tc.pattern, err, tc.want)
		}
	}
}

// TestAgreesWithPathMatch checks the general matcher against path.Match for
// absolute patterns without "**" or braces, where the semantics coincide.
func TestAgreesWithPathMatch(t *testing.T) {
	patterns := []string{"/a/*", "/a/?.md", "/a/[a-c]*", "/*/b/*.txt", "/a/[^x]y", `/a/\*`, "/ü/*"}
	paths := []string{"/a/b", "/a/b.md", "/a/c.md", "/a/bc", "/x/b/c.txt", "/a/xy", "/a/zy", "/a/*", "/ü/é", "/a/b/c"}
	for _, pat := range patterns {
		p := MustCompile(pat)
		for _, s := range paths {
			want, _ := path.Match(pat, s)
			if got := p.Match(s); got != want {
				t.Errorf("Compile(%q).Match(%q) = %v, want %v", pat, s, got, want)
			}
		}
	}
}

func TestDir(t *testing.T) {
	for _, tc := range []struct{ pattern, want string }{
		{"/data/x/**/*.md", "/data/x"},
		{"/data/x/**", "/data/x"},
		{"/data/x/a.md", "/data/x/a.md"},
		{"/data/*/a.md", "/data"},
		{"/data/x/[ab]/**", "/data/x"},
		{"/*/x", ""},
		{"**/*.md", ""},
		{"*.md", ""},
		{"a.md", ""},
		{"data/x/**", "data/x"},
		{"re:^/data", ""},
		{"/{a,b}/**", ""},
		{"/**", ""},
	} {
		p := MustCompile(tc.pattern)
		got := p.Dir()
		if got != tc.want {
			t.Errorf("Compile(%q).Dir() = %q, want %q", tc.pattern, got, tc.want)
		}
		// Every match must be got or below it.
		if got != "" {
			for _, s := range []string{got, got + "/a", got + "/a/b.md", got + "x", "/other"} {
				if p.Match(s) && s != got && !strings.HasPrefix(s, got+"/") {
					t.Errorf("Compile(%q) matches %q outside Dir %q", tc.pattern, s, got)
				}
			}
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	for _, pat := range []string{"/data/**/*.md", "**/.ssh/**", "/data/**", "*.key", "/a/[a-z]?/**/x*y", "re:^/data/.*\\.md$", "/{a,b}/**"} {
		p := MustCompile(pat)
		// The best of three: a garbage collection during a run empties
		// the regexp package's pool of matchers, and the next match
		// makes one (not an allocation per match).
		allocs := testing.AllocsPerRun(100, func() { p.Match("/data/notes/2026/a.md") })
		for range 2 {
			allocs = min(allocs, testing.AllocsPerRun(100, func() { p.Match("/data/notes/2026/a.md") }))
		}
		if allocs != 0 {
			t.Errorf("Compile(%q).Match allocs = %v, want 0", pat, allocs)
		}
	}
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{"/data/**/*.md", "**/.ssh/**", "[a-z]", "{a,b}", `\*`, "re:^a", "a/**/b/**/c", "[!\\]]"} {
		f.Add(s, "/data/a/b.md")
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		p, err := Compile(pattern)
		if err != nil {
			return
		}
		got := p.Match(name)
		// Oracle: for absolute patterns without "**", braces or regexps,
		// path.Match agrees.
		if strings.HasPrefix(pattern, "/") && !strings.Contains(pattern, "**") &&
			!strings.ContainsAny(pattern, "{}^!") && !strings.HasPrefix(pattern, RegexpPrefix) {
			if want, err := path.Match(pattern, name); err == nil && want != got {
				t.Errorf("Compile(%q).Match(%q) = %v, want %v (path.Match)", pattern, name, got, want)
			}
		}
	})
}

func BenchmarkMatch(b *testing.B) {
	for _, pat := range []string{"/data/**", "**/*.md", "/data/**/*.md", "/data/*/[a-z]*.md", "re:^/data/.*\\.md$"} {
		p := MustCompile(pat)
		b.Run(pat, func(b *testing.B) {
			b.ReportAllocs()
			start := cputime.Now()
			for b.Loop() {
				p.Match("/data/notes/2026/a.md")
			}
			cputime.Report(b, start)
		})
	}
}
