package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/semprop/semprop/client"
)

// newTopCmd is `semprop top`: the busiest paths, processes and users and
// the event rates by type, refreshed every second. It draws with plain
// ANSI (home, clear) rather than a TUI library: one full-screen table
// redrawn once a second needs no widgets, input handling or layout engine,
// and --once (what scripts and tests read) is the same text without the
// escape codes.
func newTopCmd() *cobra.Command {
	var sf serverFlags
	var once bool
	var window, interval time.Duration
	var k int
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Show the busiest paths, processes and users, like top for files",
		Long: `Show what is happening on the file system now: event rates by type (over
the last 10 seconds), and the busiest paths, processes (comm) and users (uid)
over --window, with their event counts and bytes written. The screen is
redrawn every --interval until interrupted; --once prints one frame and exits.
A token sees only the events it may see.`,
		Example: `  semprop top
  semprop top --window 5m -k 20
  semprop top --once`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if window < time.Second || window > time.Hour {
				return fmt.Errorf("--window %s: want 1s to 1h", window)
			}
			if k < 1 || k > 100 {
				return fmt.Errorf("-k %d: want 1 to 100", k)
			}
			c, err := sf.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if once {
				f, err := topFrame(cmd.Context(), c, window, k)
				if err != nil {
					return err
				}
				_, err = io.WriteString(out, f)
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				f, err := topFrame(ctx, c, window, k)
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					f = "semprop top: " + err.Error() + "\n"
				}
				// Home, draw, clear what the last frame left below.
				fmt.Fprint(out, "\x1b[H"+strings.ReplaceAll(f, "\n", "\x1b[K\n")+"\x1b[J")
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
			}
		},
	}
	sf.register(cmd)
	cmd.Flags().BoolVar(&once, "once", false, "print one frame and exit")
	cmd.Flags().DurationVar(&window, "window", time.Minute, "sliding window of the top lists (1s to 1h)")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "time between two frames")
	cmd.Flags().IntVarP(&k, "k", "k", 10, "rows per list")
	return cmd
}

// topFrame fetches and renders one frame.
func topFrame(ctx context.Context, c *client.Client, window time.Duration, k int) (string, error) {
	const rateWindow = 10 * time.Second
	types, err := c.Top(ctx, client.TopQuery{By: "type", Window: rateWindow, K: 100})
	if err != nil {
		return "", err
	}
	lists := make([]client.TopList, 3)
	for i, by := range []string{"path", "comm", "uid"} {
		if lists[i], err = c.Top(ctx, client.TopQuery{By: by, Window: window, K: k}); err != nil {
			return "", err
		}
	}
	var b strings.Builder
	secs := rateWindow.Seconds()
	fmt.Fprintf(&b, "semprop top — %s — %.1f events/s, %s/s written (last %s)\n\n",
		time.Now().Format("15:04:05"), float64(types.Total)/secs, humanBytes(float64(types.TotalBytes)/secs), rateWindow)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tEVENTS/S\tBYTES/S")
	items := types.Items
	sort.SliceStable(items, func(i, j int) bool { return items[i].Count > items[j].Count })
	for _, it := range items {
		fmt.Fprintf(tw, "%s\t%.1f\t%s\n", it.Key, float64(it.Count)/secs, humanBytes(float64(it.Bytes)/secs))
	}
	if len(items) == 0 {
		fmt.Fprintln(tw, "-\t0\t0")
	}
	tw.Flush()
	for i, title := range []string{"PATH", "PROCESS", "UID"} {
		l := lists[i]
		fmt.Fprintf(&b, "\n%s — busiest over %s (%d events)\n", title, window, l.Total)
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "EVENTS\tSHARE\tBYTES\t%s\n", title)
		for _, it := range l.Items {
			share := 0.0
			if l.Total > 0 {
				share = 100 * float64(it.Count) / float64(l.Total)
			}
			count := fmt.Sprint(it.Count)
			if it.Error > 0 {
				count = fmt.Sprintf("≤%d", it.Count)
			}
			fmt.Fprintf(tw, "%s\t%.1f%%\t%s\t%s\n", count, share, humanBytes(float64(it.Bytes)), it.Key)
		}
		tw.Flush()
	}
	return b.String(), nil
}

// humanBytes formats a byte count with a binary unit.
func humanBytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", v)
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
