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
