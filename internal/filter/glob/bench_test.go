package glob

import (
	"strings"
	"testing"
)

// BenchmarkMatchPathological measures patterns with several "**" against
// deep subjects that do not match: the worst case of the old recursive
// matcher (deep30 is the largest it finishes in reasonable time; deep200
// did not finish in minutes).
func BenchmarkMatchPathological(b *testing.B) {
	for _, tc := range []struct{ name, pattern, path string }{
		{"deep30", "/**/a/**/a/**/a/**/b", "/" + strings.Repeat("a/", 30)},
		{"deep200", "/**/a/**/a/**/a/**/a/**/b", "/" + strings.Repeat("a/", 200)},
		{"stars", "/**/" + strings.Repeat("*a", 8) + "b", "/x/" + strings.Repeat("a", 200)},
	} {
		p := MustCompile(tc.pattern)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Match(tc.path)
			}
		})
	}
}
