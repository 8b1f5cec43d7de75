package cli

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

// TestVersion: `semprop version` and `semprop --version` print the same
// line, with the Go version the binary was built with.
func TestVersion(t *testing.T) {
	var outs []string
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out, errb bytes.Buffer
		if code := Main(args, nil, &out, &errb); code != 0 {
			t.Fatalf("semprop %v: exit %d, stderr %q", args, code, errb.String())
		}
		outs = append(outs, out.String())
	}
	if outs[0] != outs[1] {
		t.Errorf("version %q != --version %q", outs[0], outs[1])
	}
	if !strings.HasPrefix(outs[0], "semprop ") || !strings.Contains(outs[0], runtime.Version()) {
		t.Errorf("version = %q, want \"semprop VERSION ... %s\"", outs[0], runtime.Version())
	}
}
