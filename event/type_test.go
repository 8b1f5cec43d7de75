package event

import "testing"

// TestValidTypeGrammar: application types follow CloudEvents producers
// (upper case, other printable characters) in dotted tokens; nothing that
// would break a token, a pattern or a line of framing passes.
func TestValidTypeGrammar(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		want bool
	}{
		{"fs.write", true},
		{"com.example.Object.Created", true},
		{"Microsoft.Storage.BlobCreated", true},
		{"com.github.pull_request.opened", true},
		{"aws:s3/ObjectCreated:Put", true},
		{"v1+json.übersicht", true},
		{"a", true},
		{"", false},
		{".a", false},
		{"a.", false},
		{"a..b", false},
		{"a b", false},
		{"a\nb", false},
		{"a\rb", false},
		{"a\tb", false},
		{"a\x00b", false},
		{"a\x7fb", false},
		{"a.*", false},
		{"a.>", false},
		{"a*b", false},
		{"a>b", false},
		{"bad\xffutf8", false},
		{"a\u0085b", false}, // C1 control (NEL)
		{"a\u2028b", false}, // line separator
	} {
		if got := ValidType(tc.typ); got != tc.want {
			t.Errorf("ValidType(%q) = %v, want %v", tc.typ, got, tc.want)
		}
	}
}

func BenchmarkValidType(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ValidType("com.example.Object.Created")
	}
}
