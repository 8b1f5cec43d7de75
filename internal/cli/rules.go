package cli

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/rules"
)

func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "List, lint and test rules (patterns over the event stream)",
		Long: `Rules match patterns of events over time (counts in a window, sequences,
absences) and publish each match as a semprop.rule.match event. The daemon
runs them with 'semprop run --rules FILE_OR_DIR'; see docs/rules.md.`,
	}

	var sf serverFlags
	var asJSON bool
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the daemon's rules with their counters",
		Long: `List the rules the daemon runs, with matches, suppressions, evictions and
state per rule.

Example:

  semprop rules ls
  semprop rules ls --json | jq '.rules[] | select(.counters.matches > 0)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			rs, st, err := c.Rules(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), map[string]any{"rules": rs, "stats": st})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RULE\tKIND\tSEVERITY\tENABLED\tEVENTS\tMATCHES\tSUPPRESSED\tTHROTTLED\tKEYS\tFILE")
			for _, r := range rs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%d\t%d\t%d\t%d\t%d\t%s:%d\n", r.Name, r.Kind, r.Severity, r.Enabled,
					r.Counters["events"], r.Counters["matches"], r.Counters["suppressed"], r.Counters["throttled"],
					r.Counters["keys"], r.File, r.Line)
			}
			fmt.Fprintf(tw, "engine: cursor %d, published %d, late %d, gaps %d\n", st.Cursor, st.Published, st.Late, st.Gaps)
			return tw.Flush()
		},
	}
	sf.register(ls)
	ls.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	lint := &cobra.Command{
		Use:   "lint RULES...",
		Short: "Validate rule files and warn about costly rules",
		Long: `Load rule files (or directories of them) as the daemon would, print every rule
and warnings about costly or unbounded ones, and exit 1 on an error (which
names the file, line and rule).

Example:

  semprop rules lint rules/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := rules.Lint(cmd.OutOrStdout(), args...); err != nil {
				return err
			}
			set, err := rules.Load(args...)
			if err != nil {
				return err
			}
			return action.NewRegistry().Check(set) // the rules' actions and their arguments
		},
	}

	var events string
	var lateness time.Duration
	var feedback bool
	test := &cobra.Command{
		Use:   "test RULES... --events FILE.ndjson",
		Short: "Run rules over a recorded event log and print the matches",
		Long: `Run rules over a recorded event log (CloudEvents NDJSON, as GET /v1/events
returns it; event time from the events) and print one JSON line per match,
the same object as the match event's data. The output depends only on the
inputs: keep it beside the rules and diff it in review.

Example:

  curl -s 'http://127.0.0.1:7878/v1/events?after=0&limit=100000' > log.ndjson
  semprop rules test rules/ --events log.ndjson`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if events == "" {
				return fmt.Errorf("--events FILE is required (NDJSON CloudEvents; - for stdin)")
			}
			set, err := rules.Load(args...)
			if err != nil {
				return err
			}
			in := cmd.InOrStdin()
			if events != "-" {
				f, err := os.Open(events)
				if err != nil {
					return fmt.Errorf("--events: %w", err)
				}
				defer f.Close()
				in = f
			}
			return rules.Test(cmd.OutOrStdout(), set, in, rules.TestOptions{Lateness: lateness, Feedback: feedback})
		},
	}
	test.Flags().StringVar(&events, "events", "", "the recorded event log (NDJSON CloudEvents), - for stdin")
	test.Flags().DurationVar(&lateness, "lateness", 0, "allowed lateness of events (as rules_lateness)")
	test.Flags().BoolVar(&feedback, "feedback", false, "feed matches back to the rules, as the daemon does")

	var rsf serverFlags
	reload := &cobra.Command{
		Use:   "reload",
		Short: "Make the daemon load its rule files again",
		Long: `Make the daemon load its rule files again and swap the rule set atomically,
keeping the state of rules that did not change (as SIGHUP does). A file with
an error is refused and the running rules stay.

Example:

  semprop rules reload`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := rsf.client()
			if err != nil {
				return err
			}
			return c.ReloadRules(cmd.Context())
		},
	}
	rsf.register(reload)
	cmd.AddCommand(ls, lint, test, reload, enableCmd(true), enableCmd(false))
	return cmd
}

// enableCmd is `semprop rules enable NAME` (or disable).
func enableCmd(on bool) *cobra.Command {
	var sf serverFlags
	verb := map[bool]string{true: "enable", false: "disable"}[on]
	cmd := &cobra.Command{
		Use:   verb + " NAME",
		Short: strings.ToUpper(verb[:1]) + verb[1:] + " one rule of the running daemon",
		Long: "Switch one rule " + map[bool]string{true: "on", false: "off"}[on] + ` until the next reload or restart.

Example:

  semprop rules ` + verb + ` burst-deletes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			return c.EnableRule(cmd.Context(), args[0], on)
		},
	}
	sf.register(cmd)
	return cmd
}
