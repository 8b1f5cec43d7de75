package route

import (
	"strings"
	"testing"

	"github.com/semprop/semprop/event"
)

// FuzzTypeGrammar: every valid event type is a literal pattern that
// matches itself, is matched by ">" and by its first token followed by
// ">", and holds nothing that would break a line of framing; no input
// makes ParsePattern or ValidType panic.
func FuzzTypeGrammar(f *testing.F) {
	for _, s := range []string{"fs.write", "com.example.Object.Created", "aws:s3/ObjectCreated:Put",
		"a..b", "a.*", "x\ny", "v1+json.übersicht", "a\u2028b", "\xff", ">", "*.x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParsePattern(s)
		if !event.ValidType(s) {
			return
		}
		if strings.ContainsAny(s, "\r\n\x00 *>") {
			t.Fatalf("ValidType(%q) with a framing or wildcard character", s)
		}
		p, err := ParsePattern(s)
		if err != nil {
			t.Fatalf("valid type %q is not a pattern: %v", s, err)
		}
		if !p.Match(s) {
			t.Fatalf("pattern %q does not match itself", s)
		}
		all, _ := ParsePattern(">")
		if !all.Match(s) {
			t.Fatalf("> does not match %q", s)
		}
		if first, rest, ok := strings.Cut(s, "."); ok && rest != "" {
			gt, err := ParsePattern(first + ".>")
			if err != nil || !gt.Match(s) {
				t.Fatalf("%s.> does not match %q: %v", first, s, err)
			}
		}
	})
}
