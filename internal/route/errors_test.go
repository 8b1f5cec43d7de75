package route

import (
	"errors"
	"strings"
	"testing"
)

// TestSelectorErrorsSayPrefixOnce: a selector error says "route:" once
// (not "route: ... route: invalid selector") and still matches both
// sentinels.
func TestSelectorErrorsSayPrefixOnce(t *testing.T) {
	for _, tc := range []struct {
		typ, path, filter string
		is                error
	}{
		{"a.>.b", "", "", ErrBadPattern},
		{"", "", "", nil},
		{"a..b", "", "", ErrBadPattern},
	} {
		_, err := ParseSelector(tc.typ, tc.path, tc.filter)
		if tc.is == nil {
			if err != nil {
				t.Errorf("ParseSelector(%q) = %v", tc.typ, err)
			}
			continue
		}
		if !errors.Is(err, ErrBadSelector) || !errors.Is(err, tc.is) {
			t.Errorf("ParseSelector(%q) = %v, want errors.Is ErrBadSelector and %v", tc.typ, err, tc.is)
		}
		if n := strings.Count(err.Error(), "route:"); n != 1 {
			t.Errorf("ParseSelector(%q) = %q: says route: %d times, want once", tc.typ, err, n)
		}
		if !strings.HasPrefix(err.Error(), "type: ") {
			t.Errorf("ParseSelector(%q) = %q, want it to start with the part at fault", tc.typ, err)
		}
	}
	_, err := FromSpec(Spec{Name: "r", Type: "a.>.b", Targets: []string{"x"}}, func(string) (int, error) { return 0, nil })
	if n := strings.Count(err.Error(), "route:"); n != 1 {
		t.Errorf("FromSpec error %q says route: %d times, want once", err, n)
	}
}

// TestPatternCloudEventsTypes: patterns take the tokens of application
// types (upper case and other printable characters) and match exactly,
// case included.
func TestPatternCloudEventsTypes(t *testing.T) {
	for _, tc := range []struct {
		pattern, typ string
		want         bool
	}{
		{"com.example.Object.Created", "com.example.Object.Created", true},
		{"com.example.Object.Created", "com.example.object.created", false},
		{"com.example.*.Created", "com.example.Object.Created", true},
		{"com.example.>", "com.example.Object.Created", true},
		{"aws:s3/ObjectCreated:Put", "aws:s3/ObjectCreated:Put", true},
		{"fs.>", "FS.write", false},
	} {
		p, err := ParsePattern(tc.pattern)
		if err != nil {
			t.Errorf("ParsePattern(%q) = %v", tc.pattern, err)
			continue
		}
		if got := p.Match(tc.typ); got != tc.want {
			t.Errorf("%q.Match(%q) = %v, want %v", tc.pattern, tc.typ, got, tc.want)
		}
	}
	for _, bad := range []string{"a b", "a*b", "aws:s3/*", "a.b>", "x\ny"} {
		if _, err := ParsePattern(bad); !errors.Is(err, ErrBadPattern) {
			t.Errorf("ParsePattern(%q) = %v, want ErrBadPattern", bad, err)
		}
	}
}
