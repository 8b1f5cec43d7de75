package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/internal/cluster"
)

func newStatusCmd() *cobra.Command {
	var sf serverFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a daemon at a glance: journal, rates, subscriptions, consumers, cluster",
		Long: `Show the daemon's version and uptime, its journal (seqs, size, segments,
fsyncs), ingest and delivery counters with their rates (over the time since
the previous status request), the live subscriptions with their queues and
drops, the dynamic routes, the durable consumers with their lag, the capture
trees and the cluster. Needs an admin token when tokens are configured.`,
		Example: `  semprop status
  semprop status --json | jq .journal.durable_seq
  SEMPROP_SERVER=https://node2:7878 semprop status --token "$ADMIN_TOKEN"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), st)
			}
			return printServerStatus(cmd.OutOrStdout(), st)
		},
	}
	sf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printServerStatus prints st as aligned sections.
func printServerStatus(w io.Writer, st client.ServerStatus) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	up := time.Duration(st.UptimeSeconds * float64(time.Second)).Round(time.Second)
	fmt.Fprintf(tw, "Server\n")
	fmt.Fprintf(tw, "  Version:\t%s %s\n", st.Version, st.GoVersion)
	fmt.Fprintf(tw, "  Started:\t%s (up %s)\n", st.Started.Format(time.RFC3339), up)
	j := st.Journal
	fmt.Fprintf(tw, "\nJournal\n")
	fmt.Fprintf(tw, "  First seq:\t%d\n", j.FirstSeq)
	fmt.Fprintf(tw, "  Last seq:\t%d (durable %d)\n", j.LastSeq, j.DurableSeq)
	fmt.Fprintf(tw, "  Size:\t%s in %d segments\n", bytesText(j.Bytes), j.Segments)
	fmt.Fprintf(tw, "  Fsyncs:\t%d (avg %.3f ms, p99 ≤ %.3f ms)\n", j.Fsyncs, j.FsyncAvgMS, j.FsyncP99MS)
	if j.BackpressureWaits > 0 {
		fmt.Fprintf(tw, "  Backpressure:\t%d waits\n", j.BackpressureWaits)
	}
	if j.NoSpace {
		fmt.Fprintf(tw, "  Disk:\tFULL: writes are refused\n")
	}
	fmt.Fprintf(tw, "\nIngest\n")
	fmt.Fprintf(tw, "  Published:\t%d (%.1f/s)\n", st.Ingest.Published, st.Ingest.PerSecond)
	d := st.Delivery
	fmt.Fprintf(tw, "\nDelivery\n")
	fmt.Fprintf(tw, "  Routed:\t%d (%.1f/s) to live subscription queues\n", d.Delivered, d.PerSecond)
	fmt.Fprintf(tw, "  Failed:\t%d (undelivered %d, failovers %d)\n", d.Failed, d.Undelivered, d.Failovers)
	fmt.Fprintf(tw, "  Latency:\tp50 %.3f ms, p99 %.3f ms\n", d.LatencyP50MS, d.LatencyP99MS)
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nLive subscriptions (%d)\n", len(st.Subscriptions))
	if len(st.Subscriptions) > 0 {
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  ID\tNAME\tPOLICY\tQUEUE\tMATCHED\tDELIVERED\tDROPPED")
		for _, s := range st.Subscriptions {
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%d/%d\t%d\t%d\t%d\n", s.ID, orDash(s.Name), s.Policy, s.Depth, s.Capacity,
				s.Matched, s.Delivered, s.Dropped)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\nRoutes (%d)\n", len(st.Routes))
	if len(st.Routes) > 0 {
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tSELECTOR\tSTRATEGY\tTARGETS")
		for _, r := range st.Routes {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\n", r.Name, r.Selector, r.Strategy, r.Targets)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\nConsumers (%d)\n", len(st.Consumers))
	if len(st.Consumers) > 0 {
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tOWNER\tOPEN\tCURSOR\tLAG\tPENDING\tREDELIVERED\tDEAD")
		for _, c := range st.Consumers {
			fmt.Fprintf(tw, "  %s\t%s\t%v\t%d\t%d\t%d\t%d\t%d\n", c.Name, orDash(c.Owner), c.Open, c.Cursor, c.Lag,
				c.Pending, c.Redelivered, c.DeadLettered)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\nCluster\n")
	if len(st.Cluster) == 0 {
		fmt.Fprintln(w, "  not in a cluster")
	} else {
		printCluster(w, st.Cluster)
	}
	names := make([]string, 0, len(st.Sections))
	for k := range st.Sections {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		fmt.Fprintf(w, "\n%s\n", titleCase(k))
		printSection(w, st.Sections[k])
	}
	return nil
}

// printCluster prints a cluster status as "semprop cluster status" does,
// indented; anything else as a generic section.
func printCluster(w io.Writer, raw json.RawMessage) {
	var cs cluster.Status
	if err := json.Unmarshal(raw, &cs); err != nil || cs.ID == "" {
		printSection(w, raw)
		return
	}
	var b strings.Builder
	printStatus(&b, cs)
	for line := range strings.Lines(b.String()) {
		fmt.Fprint(w, "  "+line)
	}
}

// printSection prints a section the daemon added: an object as aligned
// "key: value" lines, a list of objects as a table, anything else as JSON.
func printSection(w io.Writer, raw json.RawMessage) {
	var obj map[string]json.RawMessage
	var list []map[string]json.RawMessage
	switch {
	case json.Unmarshal(raw, &obj) == nil && obj != nil:
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		for _, k := range sortedKeys(obj) {
			fmt.Fprintf(tw, "  %s:\t%s\n", titleCase(k), scalarText(obj[k]))
		}
		tw.Flush()
	case json.Unmarshal(raw, &list) == nil:
		if len(list) == 0 {
			fmt.Fprintln(w, "  none")
			return
		}
		var cols []string
		for _, row := range list {
			for _, k := range sortedKeys(row) {
				if !slices.Contains(cols, k) {
					cols = append(cols, k)
				}
			}
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  "+strings.ToUpper(strings.Join(cols, "\t")))
		for _, row := range list {
			cells := make([]string, len(cols))
			for i, k := range cols {
				cells[i] = scalarText(row[k])
			}
			fmt.Fprintln(tw, "  "+strings.Join(cells, "\t"))
		}
		tw.Flush()
	default:
		fmt.Fprintf(w, "  %s\n", raw)
	}
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// scalarText is a JSON value as a cell: strings unquoted, "-" for null or
// missing, anything else as compact JSON.
func scalarText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return "-"
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

func titleCase(k string) string {
	k = strings.ReplaceAll(k, "_", " ")
	if k == "" {
		return k
	}
	return strings.ToUpper(k[:1]) + k[1:]
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f, i := float64(n), 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGT"[i-1])
}
