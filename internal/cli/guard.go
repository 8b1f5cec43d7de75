package cli

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/semprop/semprop/client"
)

func newGuardCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "guard",
		Short: "Show and release the processes the FUSE guard refuses",
		Long: `The guard refuses every operation that would change a file through a semprop
mount (create, write, rename, unlink, chmod, ...) to the processes that the
quarantine-process action put on its list, until their time is up; reads
still work. See docs/actions.md.`,
	}
	var sf serverFlags
	var asJSON bool
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the quarantined processes and users, with the operations refused",
		Long: `List the guard's entries and counters.

Example:

  semprop guard ls
  semprop guard ls --json | jq '.entries[] | .pid'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			st, err := c.Guard(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), st)
			}
			return printGuard(cmd, st)
		},
	}
	sf.register(ls)
	ls.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var rsf serverFlags
	var uid int64
	release := &cobra.Command{
		Use:   "release [PID]",
		Short: "Take a process (or, with --uid, a user) off the guard list",
		Long: `Release a quarantined process at once, instead of waiting for its time to run
out.

Example:

  semprop guard release 4242
  semprop guard release --uid 1001`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var pid int64
			if len(args) == 1 {
				var err error
				if pid, err = strconv.ParseInt(args[0], 10, 32); err != nil || pid <= 0 {
					return fmt.Errorf("pid %q: want a process id", args[0])
				}
			}
			if pid == 0 && uid < 0 {
				return fmt.Errorf("give a PID or --uid")
			}
			c, err := rsf.client()
			if err != nil {
				return err
			}
			st, err := c.GuardRelease(cmd.Context(), int32(pid), uint32(max(uid, 0)), uid >= 0)
			if err != nil {
				return err
			}
			return printGuard(cmd, st)
		},
	}
	rsf.register(release)
	release.Flags().Int64Var(&uid, "uid", -1, "release this user (listed with uid: true)")
	cmd.AddCommand(ls, release)
	return cmd
}

func printGuard(cmd *cobra.Command, st *client.GuardStatus) error {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PID\tUID\tBY UID\tUNTIL\tREFUSED\tREASON")
	for _, e := range st.Entries {
		pid := strconv.Itoa(int(e.PID))
		if e.ByUID {
			pid = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%v\t%s\t%d\t%s\n", pid, e.UID, e.ByUID, e.Until.Local().Format(time.RFC3339), e.Refused, e.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	refused := "none"
	if len(st.Stats.Refused) > 0 {
		ops := slices.Sorted(maps.Keys(st.Stats.Refused))
		parts := make([]string, len(ops))
		for i, op := range ops {
			parts[i] = fmt.Sprintf("%s %d", op, st.Stats.Refused[op])
		}
		refused = strings.Join(parts, ", ")
	}
	on := "off"
	if st.Stats.SnapshotDestroy {
		on = "on"
	}
	_, err := fmt.Fprintf(cmd.OutOrStdout(), "\nguard enabled: %v; operations refused: %s\nsnapshot before destroy %s: %d files (%d bytes) copied, %d skipped, %d failed\n",
		st.Enabled, refused, on, st.Stats.Preserved, st.Stats.PreservedBytes, st.Stats.PreserveSkipped, st.Stats.PreserveFailed)
	return err
}
