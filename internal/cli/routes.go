package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/internal/route"
)

func newRoutesCmd() *cobra.Command {
	var sf serverFlags
	cmd := &cobra.Command{
		Use:   "routes",
		Short: "List, add and remove dynamic routes (admin)",
		Long: `Dynamic routes send the events a selector matches to live subscriptions:
to named ones (--targets; a stream opened with name=) or to the members of
the group of the route's name (no --targets; streams opened with group=,
e.g. 'semprop tail --group workers'). With several targets, or a group,
the strategy chooses: broadcast (to all), round-robin, weighted, key-hash
(every event of one file to one member, in order, while the membership is
stable) or failover. A change swaps the routing table atomically.`,
	}
	var asJSON bool
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "Print the routing table: routes, groups with their members, live subscriptions",
		Example: "  semprop routes list\n  semprop routes list --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			rs, err := c.Routes(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetEscapeHTML(false)
				enc.SetIndent("", "  ")
				return enc.Encode(rs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tSELECTOR\tSTRATEGY\tTARGETS")
			for _, r := range rs {
				var sel struct{ Type, Path, Filter string }
				_ = json.Unmarshal(r.Selector, &sel)
				desc := routeSelectorText(sel.Type, sel.Path, sel.Filter, r.Filter)
				targets := strings.Join(r.Members, ",")
				if targets == "" {
					targets = fmt.Sprint(r.Targets)
				}
				strategy := r.Strategy
				if strategy == "" {
					strategy = "(no route)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Kind, desc, strategy, targets)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print the table as JSON")
	var r client.Route
	var targets, where, redact string
	add := &cobra.Command{
		Use:   "add NAME [--targets A,B] [--type PATTERN] [--path GLOB] [--filter EXPR] [--where JSON] [--deny GLOB]... [--redact JSON] [--strategy S]",
		Short: "Add or replace a dynamic route, or set a group's route",
		Long: `Add or replace the dynamic route NAME. With --targets, its events go to
those named live subscriptions. Without --targets, it is the route of the
group NAME: its events go to the group's live members, one each, by
--strategy (weights come from the members' --weight).

--where is a filter in the CloudEvents dialects, as JSON (or @FILE);
--deny hides paths from the route; --redact hides fields, as JSON (or @FILE).`,
		Example: `  semprop routes add workers --type 'job.*' --strategy key-hash
  semprop routes add md --targets indexer-1,indexer-2 --path '/data/**/*.md' --strategy failover
  semprop routes add public --targets feed --deny '/data/secret/**' \
      --redact '{"rules":[{"field":"comm","action":"drop"}]}'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r.Name = args[0]
			if targets != "" {
				r.Targets = strings.Split(targets, ",")
			}
			if r.Strategy == "broadcast" && len(r.Targets) == 0 {
				if cmd.Flags().Changed("strategy") {
					return errors.New("a group's route (no --targets) needs a strategy that picks one member: round-robin, weighted, key-hash or failover")
				}
				r.Strategy = "round-robin"
			}
			if len(r.Weights) > 0 && len(r.Targets) == 0 {
				return errors.New("--weights needs --targets: a group's weights are its members' (--weight on tail --group)")
			}
			if _, err := route.ParseSelector(r.Type, r.Path, r.Filter); err != nil {
				return err // say what is wrong before connecting
			}
			for _, x := range []struct {
				flag, v string
				dst     *json.RawMessage
			}{{"--where", where, &r.Where}, {"--redact", redact, &r.Redact}} {
				if x.v == "" {
					continue
				}
				b, err := readData(x.v, cmd.InOrStdin())
				if err != nil {
					return err
				}
				if !json.Valid(b) {
					return fmt.Errorf("%s must be a JSON object (or @FILE)", x.flag)
				}
				*x.dst = b
			}
			c, err := sf.client()
			if err != nil {
				return err
			}
			return c.AddRoutes(cmd.Context(), r)
		},
	}
	add.Flags().StringVar(&targets, "targets", "", "comma-separated names of live subscriptions (none: the route of the group NAME)")
	add.Flags().StringVar(&r.Type, "type", "", "type pattern")
	add.Flags().StringVar(&r.Path, "path", "", "subject glob")
	add.Flags().StringVar(&r.Filter, "filter", "", "filter expression")
	add.Flags().StringVar(&where, "where", "", "filter in the CloudEvents dialects, JSON or @FILE ('{\"prefix\":{\"subject\":\"/data/\"}}')")
	add.Flags().StringArrayVar(&r.Deny, "deny", nil, "path pattern whose events never take the route (repeatable)")
	add.Flags().StringVar(&redact, "redact", "", "fields to hide from the targets, JSON or @FILE")
	add.Flags().StringVar(&r.Strategy, "strategy", "broadcast", "broadcast, round-robin, weighted, key-hash or failover (a group's default: round-robin)")
	add.Flags().IntSliceVar(&r.Weights, "weights", nil, "weights for --strategy weighted, one per target")
	add.Flags().BoolVar(&r.Breakers, "breakers", false, "a circuit breaker per target")
	rm := &cobra.Command{
		Use:     "rm NAME",
		Short:   "Remove a dynamic route (a group's members stay, with nothing to receive)",
		Example: "  semprop routes rm md",
		Args:    cobra.ExactArgs(1),
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

// routeSelectorText describes a route's selector on one line: "type PATH filter".
func routeSelectorText(typ, path, filter, extra string) string {
	var parts []string
	if typ == "" {
		typ = ">"
	}
	parts = append(parts, typ)
	if path != "" {
		parts = append(parts, path)
	}
	if filter != "" {
		parts = append(parts, "("+filter+")")
	}
	if extra != "" {
		parts = append(parts, "where "+extra)
	}
	return strings.Join(parts, " ")
}
