package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/bytesize"
)

// snapshotDir finds the snapshot store from a data directory or the
// store itself.
func snapshotDir(dir string) string {
	if _, err := os.Stat(filepath.Join(dir, "snapshots", "manifests")); err == nil {
		return filepath.Join(dir, "snapshots")
	}
	return dir
}

func openSnapshots(dir string) (*action.Store, error) {
	d := snapshotDir(dir)
	if _, err := os.Stat(filepath.Join(d, "manifests")); err != nil {
		return nil, fmt.Errorf("%s: no snapshot store (want the data directory or DATA/snapshots)", dir)
	}
	return action.OpenStore(d)
}

func newSnapshotsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshots",
		Short: "List and restore the files that rule actions saved",
		Long: `The snapshot action copies files into a content-addressed store under the
daemon's data directory (DATA/snapshots) before a rule's other actions act.
DIR is the data directory (or DATA/snapshots).`,
	}
	var under string
	ls := &cobra.Command{
		Use:   "ls DIR [ID]",
		Short: "List snapshots, or the files of one",
		Long: `List the snapshots (of the snapshot action, and the guard's copies before
destroy: rule "guard"), or the files of one. With --path, list every copy of
the files at or under a path, newest last, with the snapshot that holds it.

Example:

  semprop snapshots ls /var/lib/semprop
  semprop snapshots ls /var/lib/semprop --path /srv/docs
  semprop snapshots restore /var/lib/semprop ID --path /srv/docs/a.txt`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openSnapshots(args[0])
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			if len(args) == 2 {
				m, err := st.Manifest(args[1])
				if err != nil {
					return err
				}
				fmt.Fprintln(tw, "PATH\tSIZE\tSHA256\tOP")
				for _, f := range m.Files {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", f.Path, f.Size, f.SHA256, f.Op)
				}
				for _, s := range m.Skipped {
					fmt.Fprintf(tw, "%s\t-\tskipped: %s\n", s.Path, s.Reason)
				}
				return tw.Flush()
			}
			ms, err := st.List()
			if err != nil {
				return err
			}
			if under != "" {
				fmt.Fprintln(tw, "PATH\tTIME\tSIZE\tOP\tID")
				for _, m := range ms {
					for _, f := range m.Files {
						if f.Path == under || strings.HasPrefix(f.Path, strings.TrimSuffix(under, "/")+"/") {
							when := f.Time
							if when.IsZero() {
								when = m.Time
							}
							fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", f.Path, when.Format(time.RFC3339Nano), f.Size, f.Op, m.ID)
						}
					}
				}
				return tw.Flush()
			}
			fmt.Fprintln(tw, "ID\tTIME\tRULE\tFILES\tBYTES\tKEY")
			for _, m := range ms {
				var n int64
				for _, f := range m.Files {
					n += f.Size
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", m.ID, m.Time.Format(time.RFC3339), m.Rule, len(m.Files), n, m.Key)
			}
			return tw.Flush()
		},
	}
	ls.Flags().StringVar(&under, "path", "", "list the copies of the files at or under this path")
	cmd.AddCommand(ls)
	var (
		paths []string
		to    string
		force bool
	)
	restore := &cobra.Command{
		Use:   "restore DIR ID",
		Short: "Write a snapshot's files back (to their paths, or under --to)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openSnapshots(args[0])
			if err != nil {
				return err
			}
			done, err := st.Restore(args[1], action.RestoreOptions{Paths: paths, To: to, Force: force})
			for _, p := range done {
				fmt.Fprintln(cmd.OutOrStdout(), "restored", p)
			}
			return err
		},
	}
	restore.Flags().StringArrayVar(&paths, "path", nil, "restore only this path (repeatable)")
	restore.Flags().StringVar(&to, "to", "", "recreate the paths under this directory instead of in place")
	restore.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	cmd.AddCommand(restore)
	cmd.AddCommand(newSnapshotsPruneCmd())
	return cmd
}

func newSnapshotsPruneCmd() *cobra.Command {
	var (
		olderThan time.Duration
		maxSize   string
		dryRun    bool
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "prune DIR",
		Short: "Delete old snapshots, and the copies only they kept",
		Long: `Delete the snapshots taken more than --older-than ago, then the oldest ones
until the copies the others keep total at most --max-size, then every copied
file no snapshot refers to any more. A running daemon does the same every hour
with actions.snapshot_retention and actions.snapshot_max_size; this command
is safe beside it. Copies younger than 10 minutes are kept even when no
snapshot refers to them yet (a snapshot being taken). A snapshot manifest
that cannot be read is kept, and then no copied file is deleted.

Example:

  semprop snapshots prune /var/lib/semprop --older-than 168h --dry-run
  semprop snapshots prune /var/lib/semprop --max-size 10GiB`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := action.PruneOptions{DryRun: dryRun}
			if olderThan < 0 {
				return fmt.Errorf("--older-than %v: want a positive duration", olderThan)
			}
			if olderThan > 0 {
				o.Before = time.Now().Add(-olderThan)
			}
			if maxSize != "" {
				n, err := bytesize.Parse(maxSize)
				if err != nil {
					return fmt.Errorf("--max-size: %w", err)
				}
				o.MaxSize = n
			}
			if o.Before.IsZero() && o.MaxSize == 0 {
				return fmt.Errorf("say what to delete: --older-than DURATION and/or --max-size SIZE")
			}
			st, err := openSnapshots(args[0])
			if err != nil {
				return err
			}
			res, err := st.Prune(o)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), res)
			}
			verb := "deleted"
			if dryRun {
				verb = "would delete"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %d snapshots and %d copied files (%s); kept %d snapshots (%s)\n",
				verb, res.Snapshots, res.Objects, humanBytes(float64(res.Bytes)), res.Kept, humanBytes(float64(res.KeptBytes)))
			if res.Unreadable > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %d snapshot manifests cannot be read; no copied file was deleted\n", res.Unreadable)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&olderThan, "older-than", 0, "delete snapshots taken longer ago than this (e.g. 720h)")
	cmd.Flags().StringVar(&maxSize, "max-size", "", "then delete the oldest until the copies kept total at most this (e.g. 10GiB)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "say what would be deleted, delete nothing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
