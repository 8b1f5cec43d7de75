package cli

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestUnknownSubcommandFails: a mistyped subcommand of any command that
// has subcommands (`semprop consumers create x`) fails with "unknown
// command" and exit 1, as one of the root does, instead of printing the
// parent's help and exiting 0 — a script must not take a typo for
// success. The parent alone still prints its help and succeeds.
func TestUnknownSubcommandFails(t *testing.T) {
	var parents [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.HasSubCommands() {
			parents = append(parents, path)
		}
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(newRoot(nil, io.Discard, io.Discard), nil)
	if len(parents) < 5 {
		t.Fatalf("found %d commands with subcommands: %v", len(parents), parents)
	}
	for _, p := range parents {
		args := append(append([]string(nil), p...), "nosuchcmd", "x")
		var out, errb bytes.Buffer
		code := Main(args, nil, &out, &errb)
		want := `unknown command "nosuchcmd" for "` + strings.Join(append([]string{"semprop"}, p...), " ") + `"`
		if code != 1 || !strings.Contains(errb.String(), want) {
			t.Errorf("semprop %s: exit %d, stderr %q; want exit 1 and %s", strings.Join(args, " "), code, errb.String(), want)
		}
		if len(p) == 0 {
			continue
		}
		out.Reset()
		errb.Reset()
		if code := Main(p, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "Available Commands") {
			t.Errorf("semprop %s: exit %d, want 0 and its help (stderr %q)", strings.Join(p, " "), code, errb.String())
		}
	}
}
