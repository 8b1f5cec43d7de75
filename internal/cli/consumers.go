package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/internal/route"
)

func newConsumersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "consumers",
		Aliases: []string{"consumer"},
		Short:   "Create, inspect, read from and remove durable consumers",
		Long: `A durable consumer reads the events its selector matches from the journal,
at least once, from a cursor the server keeps: every event must be acked, or
it is delivered again after the consumer's ack wait; after max-deliver
deliveries it is given up (a dead letter). Consumers survive restarts of the
server and of the reader. With tokens configured, each token has its own
consumers.`,
		Example: `  semprop consumers add indexer --type 'fs.write' --path '/data/**/*.md' --ack-wait 1m
  semprop consumers next indexer --count 10
  semprop consumers ack indexer 41 42
  semprop consumers info indexer
  semprop consumers ls
  semprop consumers rm indexer`,
	}
	for _, sub := range []*cobra.Command{newConsumersLsCmd(), newConsumersAddCmd(), newConsumersInfoCmd(),
		newConsumersNextCmd(), newConsumersAckCmd(), newConsumersRmCmd()} {
		cmd.AddCommand(sub)
	}
	return cmd
}

// writeJSONOut writes v as indented JSON, without escaping <, > and &
// (type patterns such as "fs.>" stay readable).
func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newConsumersLsCmd() *cobra.Command {
	var sf serverFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List durable consumers with their cursor, lag and backlog",
		Long: `List the durable consumers (yours; every one for an admin token). CURSOR is
the last seq the consumer read, LAG the events after it in the journal,
BACKLOG those of them that match it and are not acked (">=N": the server
stopped counting at N), PENDING the deliveries not acked yet.`,
		Example: `  semprop consumers ls
  semprop consumers ls --json | jq '.[] | select(.info.backlog > 1000) | .name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			cs, err := c.Consumers(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), cs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSELECTOR\tCURSOR\tLAG\tBACKLOG\tPENDING\tREDELIVERED\tDEAD")
			for _, cn := range cs {
				in := cn.Info
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%d\t%d\n", cn.Name, selectorText(cn.Spec), in.Cursor, in.Lag,
					backlogText(in), in.Pending, in.Redelivered, in.DeadLettered)
			}
			return tw.Flush()
		},
	}
	sf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// selectorText is a consumer's selector in one word: "type path filter",
// the parts it has, or "*" for every event.
func selectorText(s client.Subscription) string {
	var parts []string
	if s.Type != "" {
		parts = append(parts, s.Type)
	}
	if s.Path != "" {
		parts = append(parts, s.Path)
	}
	if s.Filter != "" {
		parts = append(parts, strconv.Quote(s.Filter))
	}
	for _, d := range s.Deny {
		parts = append(parts, "!"+d)
	}
	if len(parts) == 0 {
		return "*"
	}
	return strings.Join(parts, " ")
}

func backlogText(in client.ConsumerInfo) string {
	if in.BacklogCapped {
		return ">=" + strconv.FormatUint(in.Backlog, 10)
	}
	return strconv.FormatUint(in.Backlog, 10)
}

func newConsumersAddCmd() *cobra.Command {
	var sf serverFlags
	var sub client.Subscription
	var ackWait, settle time.Duration
	var redact []string
	cmd := &cobra.Command{
		Use:   "add NAME [--type PATTERN] [--path GLOB] [--filter EXPR] [--deny GLOB]... [--redact FIELD=ACTION]... [--ack-wait D] [--settle D] [--max-deliver N] [--start-seq SEQ]",
		Short: "Create a durable consumer",
		Long: `Create the durable consumer NAME (1-64 of a-z A-Z 0-9 _ -). It starts at the
first event in the journal (or at --start-seq) and reads what the selector
matches: every event without one.`,
		Example: `  semprop consumers add indexer --type 'fs.write' --path '/data/**/*.md'
  semprop consumers add big --filter 'size > 1000000' --ack-wait 5m --max-deliver 3
  semprop consumers add audit --type 'fs.>' --deny '**/*.key' --redact comm=mask --redact uid=hash
  semprop consumers add builds --path '/src/**' --settle 500ms   # one delivery per burst on a file`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sub.Name = args[0]
			if _, err := route.ParseSelector(sub.Type, sub.Path, sub.Filter); err != nil {
				return err // say what is wrong before connecting
			}
			if cmd.Flags().Changed("ack-wait") {
				if ackWait <= 0 {
					return fmt.Errorf("--ack-wait %s: want a positive duration such as 30s", ackWait)
				}
				sub.AckWait = ackWait.String()
			}
			if cmd.Flags().Changed("settle") {
				if settle < time.Millisecond || settle > time.Minute {
					return fmt.Errorf("--settle %s: want 1ms to 1m, shorter than --ack-wait", settle)
				}
				sub.Settle = settle.String()
			}
			for _, r := range redact {
				field, action, ok := strings.Cut(r, "=")
				if !ok || field == "" || action == "" {
					return fmt.Errorf("--redact %q: want FIELD=ACTION, e.g. comm=mask (mask, hash or drop)", r)
				}
				if sub.Redact == nil {
					sub.Redact = &client.RedactSpec{}
				}
				sub.Redact.Rules = append(sub.Redact.Rules, client.RedactRule{Field: field, Action: action})
			}
			if sub.MaxDeliver < 0 {
				return fmt.Errorf("--max-deliver %d: want 1 or more", sub.MaxDeliver)
			}
			c, err := sf.client()
			if err != nil {
				return err
			}
			if err := c.CreateSubscription(cmd.Context(), sub); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created consumer %s\n", sub.Name)
			return nil
		},
	}
	sf.register(cmd)
	cmd.Flags().StringVar(&sub.Type, "type", "", "type pattern ('fs.>', 'fs.write', 'app.*')")
	cmd.Flags().StringVar(&sub.Path, "path", "", "subject glob ('/data/**/*.md')")
	cmd.Flags().StringVar(&sub.Filter, "filter", "", "filter expression ('size > 0')")
	cmd.Flags().StringArrayVar(&sub.Deny, "deny", nil, "never deliver events whose subject matches this glob (repeatable)")
	cmd.Flags().StringArrayVar(&redact, "redact", nil, "hide a field of delivered events: FIELD=mask|hash|drop (repeatable)")
	cmd.Flags().DurationVar(&ackWait, "ack-wait", 30*time.Second, "deliver an event again when not acked within this")
	cmd.Flags().DurationVar(&settle, "settle", 0, "deliver one event per burst on a subject, once it was quiet this long (1ms-1m; acking it acks the burst)")
	cmd.Flags().IntVar(&sub.MaxDeliver, "max-deliver", 0, "deliveries before an event is given up (default 5)")
	cmd.Flags().Uint64Var(&sub.StartSeq, "start-seq", 0, "start at this seq (default: the first in the journal)")
	return cmd
}

func newConsumersInfoCmd() *cobra.Command {
	var sf serverFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info NAME",
		Short: "Show a durable consumer: its selector, cursor, backlog and counters",
		Long: `Show the durable consumer NAME: its spec, its cursor (the last seq it read)
and the journal's head, its lag (head - cursor), its backlog (the events after
the cursor that match it and are not acked; ">=N" when the server stopped
counting), the deliveries pending an ack, and its delivery, redelivery and
dead-letter counters. Right after a server restart too.`,
		Example: `  semprop consumers info indexer
  semprop consumers info indexer --json | jq .info.backlog`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			cn, err := c.ConsumerInfo(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), cn)
			}
			return printConsumer(cmd.OutOrStdout(), cn)
		},
	}
	sf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printConsumer(w io.Writer, cn client.Consumer) error {
	in, sp := cn.Info, cn.Spec
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	or := func(s, def string) string {
		if s == "" {
			return def
		}
		return s
	}
	fmt.Fprintf(tw, "Consumer:\t%s\n", cn.Name)
	if sp.Owner != "" && sp.Owner != "anonymous" {
		fmt.Fprintf(tw, "Owner:\t%s\n", sp.Owner)
	}
	fmt.Fprintf(tw, "Selector:\t%s\n", selectorText(sp))
	if sp.Redact != nil {
		var rs []string
		for _, r := range sp.Redact.Rules {
			rs = append(rs, r.Field+"="+r.Action)
		}
		fmt.Fprintf(tw, "Redact:\t%s\n", strings.Join(rs, ", "))
	}
	fmt.Fprintf(tw, "Ack wait:\t%s\n", or(sp.AckWait, "30s"))
	maxDeliver := "5"
	if sp.MaxDeliver > 0 {
		maxDeliver = strconv.Itoa(sp.MaxDeliver)
	}
	fmt.Fprintf(tw, "Max deliver:\t%s\n", maxDeliver)
	state := "closed (opens on the next fetch)"
	if in.Open {
		state = "open"
	}
	fmt.Fprintf(tw, "State:\t%s\n", state)
	fmt.Fprintf(tw, "Cursor:\t%d (journal head %d, lag %d)\n", in.Cursor, in.Head, in.Lag)
	fmt.Fprintf(tw, "Backlog:\t%s matching events not delivered yet\n", backlogText(in))
	fmt.Fprintf(tw, "Ack floor:\t%d\n", in.AckFloor)
	fmt.Fprintf(tw, "Ack pending:\t%d\n", in.Pending)
	fmt.Fprintf(tw, "Delivered:\t%d (redelivered %d)\n", in.Delivered, in.Redelivered)
	fmt.Fprintf(tw, "Acked:\t%d\n", in.Acked)
	fmt.Fprintf(tw, "Dead letters:\t%d\n", in.DeadLettered)
	if in.Gaps > 0 {
		fmt.Fprintf(tw, "Lost to retention:\t%d\n", in.Gaps)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(cn.DeadLetters) > 0 {
		fmt.Fprintln(w, "\nNewest dead letters:")
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SEQ\tTYPE\tDELIVERIES\tGIVEN UP")
		for _, d := range cn.DeadLetters[max(0, len(cn.DeadLetters)-10):] {
			fmt.Fprintf(tw, "  %d\t%s\t%d\t%s\n", d.Seq, d.Type, d.Deliveries, d.Time.Format(time.RFC3339))
		}
		return tw.Flush()
	}
	return nil
}

func newConsumersNextCmd() *cobra.Command {
	var sf serverFlags
	var count int
	var wait time.Duration
	var ack bool
	cmd := &cobra.Command{
		Use:   "next NAME [--count N] [--wait D] [--ack]",
		Short: "Take the next deliveries of a durable consumer",
		Long: `Take up to --count deliveries of the durable consumer NAME, waiting up to
--wait for the first, and print each as one JSON line:
{"attempt":N,"event":{CloudEvents JSON with "seq"}}. Without --ack, ack
them later with "semprop consumers ack NAME SEQ..." (or they are delivered
again after the ack wait); with --ack they are acked once printed. Prints
nothing when nothing arrived within --wait.`,
		Example: `  semprop consumers next indexer --count 10
  semprop consumers next indexer --ack | jq -r .event.subject
  while line=$(semprop consumers next jobs --wait 30s) && [ -n "$line" ]; do
    seq=$(echo "$line" | jq .event.seq); process "$line" && semprop consumers ack jobs "$seq"
  done`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 1 || count > 10000 {
				return fmt.Errorf("--count %d: want 1-10000", count)
			}
			if wait < 0 || wait > time.Minute {
				return fmt.Errorf("--wait %s: want 0-60s", wait)
			}
			c, err := sf.client()
			if err != nil {
				return err
			}
			ds, err := c.Fetch(cmd.Context(), args[0], count, wait)
			if err != nil {
				return err
			}
			w := bufio.NewWriter(cmd.OutOrStdout())
			buf := make([]byte, 0, 1024)
			seqs := make([]uint64, 0, len(ds))
			for _, d := range ds {
				buf = append(buf[:0], `{"attempt":`...)
				buf = strconv.AppendInt(buf, int64(d.Attempt), 10)
				buf = append(buf, `,"event":`...)
				buf = append(d.Event.AppendJSON(buf), "}\n"...)
				w.Write(buf)
				seqs = append(seqs, d.Event.Seq)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if ack && len(seqs) > 0 {
				return c.Ack(cmd.Context(), args[0], seqs...)
			}
			return nil
		},
	}
	sf.register(cmd)
	cmd.Flags().IntVar(&count, "count", 1, "take up to this many deliveries (1-10000)")
	cmd.Flags().DurationVar(&wait, "wait", 5*time.Second, "wait up to this for the first delivery (at most 60s)")
	cmd.Flags().BoolVar(&ack, "ack", false, "ack the deliveries once printed")
	return cmd
}

func newConsumersAckCmd() *cobra.Command {
	var sf serverFlags
	cmd := &cobra.Command{
		Use:   "ack NAME SEQ...",
		Short: "Acknowledge deliveries of a durable consumer by seq",
		Long: `Acknowledge deliveries of the durable consumer NAME by their seq (the
"seq" of the event "next" printed). Acking a seq that is not pending is a
no-op.`,
		Example: `  semprop consumers ack indexer 41 42 43`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			seqs := make([]uint64, 0, len(args)-1)
			for _, a := range args[1:] {
				s, err := strconv.ParseUint(a, 10, 64)
				if err != nil || s == 0 {
					return fmt.Errorf("seq %q: want a positive integer", a)
				}
				seqs = append(seqs, s)
			}
			c, err := sf.client()
			if err != nil {
				return err
			}
			return c.Ack(cmd.Context(), args[0], seqs...)
		},
	}
	sf.register(cmd)
	return cmd
}

func newConsumersRmCmd() *cobra.Command {
	var sf serverFlags
	cmd := &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"delete"},
		Short:   "Remove a durable consumer and its cursor",
		Example: `  semprop consumers rm indexer`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			if err := c.DeleteSubscription(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed consumer %s\n", args[0])
			return nil
		},
	}
	sf.register(cmd)
	return cmd
}
