package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/semprop/semprop/client"
)

func newRoutesCmd() *cobra.Command {
	var sf serverFlags
	cmd := &cobra.Command{
		Use:   "routes",
		Short: "List, add and remove dynamic routes (admin)",
		Long: `Dynamic routes send the events a selector matches to named live
subscriptions: to all of them (broadcast), or to one member of the group by
round-robin, weighted, key-hash (every event of one file to one member, in
order) or failover. A change swaps the routing table atomically.`,
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "Print the routing table",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			rs, err := c.Routes(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSELECTOR\tSTRATEGY\tTARGETS")
			for _, r := range rs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", r.Name, r.Selector, r.Strategy, r.Targets)
			}
			return tw.Flush()
		},
	}
	var r client.Route
	var targets string
	add := &cobra.Command{
		Use:   "add NAME --targets A,B [--type PATTERN] [--path GLOB] [--filter EXPR] [--strategy S]",
		Short: "Add or replace a dynamic route",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			r.Name = args[0]
			r.Targets = strings.Split(targets, ",")
			return c.AddRoutes(cmd.Context(), r)
		},
	}
	add.Flags().StringVar(&targets, "targets", "", "comma-separated names of live subscriptions")
	add.Flags().StringVar(&r.Type, "type", "", "type pattern")
	add.Flags().StringVar(&r.Path, "path", "", "subject glob")
	add.Flags().StringVar(&r.Filter, "filter", "", "filter expression")
	add.Flags().StringVar(&r.Strategy, "strategy", "broadcast", "broadcast, round-robin, weighted, key-hash or failover")
	add.Flags().IntSliceVar(&r.Weights, "weights", nil, "weights for --strategy weighted")
	add.Flags().BoolVar(&r.Breakers, "breakers", false, "a circuit breaker per target")
	_ = add.MarkFlagRequired("targets")
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a dynamic route",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			return c.RemoveRoute(cmd.Context(), args[0])
		},
	}
	for _, sub := range []*cobra.Command{list, add, rm} {
		sf.register(sub)
		cmd.AddCommand(sub)
	}
	return cmd
}
