package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/semprop/semprop/internal/audit"
)

// auditDir finds the audit log from a data directory, an audit
// directory or the log file itself.
func auditDir(dir string) string {
	if _, err := os.Stat(filepath.Join(dir, "audit", audit.FileName)); err == nil {
		return filepath.Join(dir, "audit")
	}
	return dir
}

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Check and list the audit trail of rule actions",
		Long: `The audit trail records every action that rules run: the intent (with the
rendered arguments and the checked preconditions) before it runs, the outcome
after, rollbacks, and the outcome of each match. Each record holds the
SHA-256 of the one before it. DIR is the daemon's data directory (or its
audit/ directory, or the audit.log file).`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "verify DIR",
		Short: "Check the hash chain; exit 1 naming the first broken record",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := audit.Verify(auditDir(args[0]))
			var be *audit.BrokenError
			if errors.As(err, &be) {
				fmt.Fprintf(cmd.ErrOrStderr(), "semprop: audit: broken at record %d (line %d): %s\n", be.Line, be.Line, be.Reason)
				return exitError{code: 1}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d records, chain intact\n", n)
			return nil
		},
	})
	var (
		rule, since, kind string
		limit             int
		asJSON            bool
	)
	ls := &cobra.Command{
		Use:   "ls DIR",
		Short: "List audit records (newest last)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := audit.ParseSince(since, time.Now())
			if err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			recs, err := audit.List(auditDir(args[0]), audit.Filter{Rule: rule, Since: t, Kind: kind, Limit: limit})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetEscapeHTML(false)
				for _, r := range recs {
					if err := enc.Encode(r); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tRULE\tKEY\tTYPE\tOUTCOME")
			for _, r := range recs {
				what := r.Outcome
				if r.Error != "" {
					what = strings.TrimSpace(what + " " + firstLine(r.Error))
				}
				typ := r.Type
				if r.Kind == audit.KindMatch {
					typ = "-"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.Format(time.RFC3339), r.Kind, r.Rule, r.Key, typ, what)
			}
			return tw.Flush()
		},
	}
	ls.Flags().StringVar(&rule, "rule", "", "only this rule's records")
	ls.Flags().StringVar(&since, "since", "", "only records since this time (RFC 3339) or this long ago (1h)")
	ls.Flags().StringVar(&kind, "kind", "", "only records of this kind (intent, done, failed, interrupted, rollback, rolledback, rollback-failed, match)")
	ls.Flags().IntVar(&limit, "limit", 0, "at most this many records, the newest")
	ls.Flags().BoolVar(&asJSON, "json", false, "print the records as JSON lines")
	cmd.AddCommand(ls)
	return cmd
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
