package cli

import "testing"

func TestWithin(t *testing.T) {
	for _, tc := range []struct {
		path, root string
		want       bool
	}{
		{"/data/semprop-data", "/data", true},
		{"/data", "/data", true},
		{"/database", "/data", false},
		{"/srv/x", "/data", false},
		{"/data/../x", "/data", false},
	} {
		if got := within(tc.path, tc.root); got != tc.want {
			t.Errorf("within(%q, %q) = %v, want %v", tc.path, tc.root, got, tc.want)
		}
	}
}
