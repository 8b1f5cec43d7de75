package cli

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/internal/monitor"
)

func newAlertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "alerts",
		Aliases: []string{"alert"},
		Short:   "List the daemon's alerts, silence and unsilence them",
		Long: `The daemon's monitor evaluates alert rules over its own metrics (the
default rules and 'monitor.rule_files') and notifies as events
(semprop.alert.firing, semprop.alert.resolved), webhooks and Alertmanager.
A silence mutes the alerts its matchers select until it expires; see
docs/monitoring.md.`,
		Example: `  semprop alerts ls
  semprop alerts ls --state firing --json
  semprop alerts silence 'alertname="DiskPredictedFull"' --for 4h --comment "cleanup running"
  semprop alerts unsilence 3f2a9c0d1e4b5a67`,
	}
	cmd.AddCommand(newAlertsLsCmd(), newAlertsSilenceCmd(), newAlertsUnsilenceCmd())
	return cmd
}

func newAlertsLsCmd() *cobra.Command {
	var sf serverFlags
	var asJSON bool
	var state string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List alerts (pending, firing, resolved in the last 15 minutes) and silences",
		Long: `List the alerts with their state, since when, their labels and summary,
and what mutes them (a silence's id, or "inhibited"); then the silences.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch state {
			case "", "pending", "firing", "resolved":
			default:
				return fmt.Errorf("--state: want pending, firing or resolved")
			}
			c, err := sf.client()
			if err != nil {
				return err
			}
			as, ss, err := c.Alerts(cmd.Context(), state)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), map[string]any{"alerts": as, "silences": ss})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ALERT\tSTATE\tSINCE\tLABELS\tMUTED\tSUMMARY")
			now := time.Now()
			for _, a := range as {
				since := a.ActiveAt
				if !a.FiredAt.IsZero() {
					since = a.FiredAt
				}
				if !a.ResolvedAt.IsZero() {
					since = a.ResolvedAt
				}
				muted := "-"
				switch {
				case len(a.SilencedBy) > 0:
					muted = "silenced " + strings.Join(a.SilencedBy, ",")
				case len(a.InhibitedBy) > 0:
					muted = "inhibited"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s ago\t%s\t%s\t%s\n", a.Labels["alertname"], a.State, now.Sub(since).Round(time.Second),
					labelString(a.Labels), muted, a.Annotations["summary"])
			}
			if len(ss) > 0 {
				fmt.Fprintln(tw)
				fmt.Fprintln(tw, "SILENCE\tSTATE\tENDS\tMATCHERS\tBY\tCOMMENT")
				for _, s := range ss {
					st := "active"
					switch {
					case now.Before(s.StartsAt):
						st = "pending"
					case !now.Before(s.EndsAt):
						st = "expired"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, st, s.EndsAt.Local().Format(time.DateTime),
						strings.Join(s.Matchers, ","), s.CreatedBy, s.Comment)
				}
			}
			return tw.Flush()
		},
	}
	sf.register(cmd)
	cmd.Flags().StringVar(&state, "state", "", "only alerts in this state: pending, firing or resolved")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// labelString renders labels other than alertname as a=b,c=d.
func labelString(l map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		if k != "alertname" {
			parts = append(parts, k+"="+l[k])
		}
	}
	return strings.Join(parts, ",")
}

func newAlertsSilenceCmd() *cobra.Command {
	var sf serverFlags
	var dur time.Duration
	var comment, author string
	cmd := &cobra.Command{
		Use:   "silence MATCHER...",
		Short: "Mute the alerts the matchers select for a while",
		Long: `Create a silence: the alerts whose labels match every MATCHER are not
notified until it expires (they stay listed, marked silenced). A matcher is
NAME=VALUE, NAME!=VALUE, NAME=~REGEXP or NAME!~REGEXP; VALUE may be
quoted ("...") or bare (tree=/srv/data). It prints the silence's id for 'semprop alerts unsilence'.`,
		Example: `  semprop alerts silence alertname=ConsumerLagGrowing consumer=indexer --for 2h --comment "reindexing"
  semprop alerts silence 'severity=~"warning|info"' --for 30m`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dur <= 0 {
				return errors.New("--for: want a positive duration, e.g. 2h")
			}
			ms := make([]string, len(args))
			for i, a := range args {
				m, err := normalizeMatcher(a)
				if err != nil {
					return err
				}
				ms[i] = m
			}
			if author == "" {
				author = os.Getenv("USER")
			}
			c, err := sf.client()
			if err != nil {
				return err
			}
			s, err := c.Silence(cmd.Context(), client.Silence{Matchers: ms, CreatedBy: author, Comment: comment}, dur)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s (until %s)\n", s.ID, s.EndsAt.Local().Format(time.DateTime))
			return nil
		},
	}
	sf.register(cmd)
	cmd.Flags().DurationVar(&dur, "for", time.Hour, "how long the silence lasts")
	cmd.Flags().StringVar(&comment, "comment", "", "why (shown in alerts ls)")
	cmd.Flags().StringVar(&author, "author", "", "who (default $USER)")
	return cmd
}

var matcherArg = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$`)

// normalizeMatcher quotes a bare value (tree=/srv/a → tree="/srv/a") and
// checks the matcher.
func normalizeMatcher(a string) (string, error) {
	m := matcherArg.FindStringSubmatch(a)
	if m == nil {
		return "", fmt.Errorf("matcher %q: want NAME=VALUE, NAME!=VALUE, NAME=~REGEXP or NAME!~REGEXP", a)
	}
	val := m[3]
	if !strings.HasPrefix(val, `"`) && !strings.HasPrefix(val, "'") && !strings.HasPrefix(val, "`") {
		val = strconv.Quote(val)
	}
	out := m[1] + m[2] + val
	if _, err := monitor.ParseMatchers(out); err != nil {
		return "", fmt.Errorf("matcher %q: %w", a, err)
	}
	return out, nil
}

func newAlertsUnsilenceCmd() *cobra.Command {
	var sf serverFlags
	cmd := &cobra.Command{
		Use:   "unsilence ID...",
		Short: "End silences now",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			for _, id := range args {
				if err := c.Unsilence(cmd.Context(), id); err != nil {
					return fmt.Errorf("%s: %w", id, err)
				}
				fmt.Fprintln(cmd.OutOrStdout(), "expired", id)
			}
			return nil
		},
	}
	sf.register(cmd)
	return cmd
}

func newHealthCmd() *cobra.Command {
	var sf serverFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Show the daemon's health checks",
		Long: `Show the health of each component (ok, degraded, failing), why, and the
measurements behind it; exit status 1 when a check fails. Without an admin
token the daemon shows the counts per status only. See docs/monitoring.md
for what to do when a check fails.`,
		Example: `  semprop health
  semprop health --json | jq '.checks[] | select(.status != "ok")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			h, err := c.Health(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSONOut(cmd.OutOrStdout(), h); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "overall: %s (ok %d, degraded %d, failing %d)\n", h.Status, h.Counts["ok"], h.Counts["degraded"], h.Counts["failing"])
				if len(h.Checks) > 0 {
					fmt.Fprintln(tw, "CHECK\tCOMPONENT\tSTATUS\tREASON")
					for _, ch := range h.Checks {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ch.Name, ch.Component, ch.Status, ch.Reason)
					}
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if h.Status == "failing" {
				return errors.New("health: failing")
			}
			return nil
		},
	}
	sf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
