package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newOutputsCmd() *cobra.Command {
	var sf serverFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "outputs",
		Aliases: []string{"output"},
		Short:   "List the daemon's outputs (Kafka, NATS, webhooks, files, syslog) with their counters",
		Long: `List the outputs configured under outputs: in the daemon's configuration. Each
is a durable consumer of the journal: CURSOR is the last seq it is done with
(acknowledged by the target, dead-lettered or not matching), LAG the durable
events after it, SENT the events the target acknowledged, RETRIES the failed
attempts, DEAD the events written to its dead letter file
(DATA/outputs/NAME/deadletter.ndjson). STATE is retrying while the target
fails; LAST ERROR says why. A NATS output's TYPE says how it publishes:
nats/fast_batch (JetStream fast batches) or nats/per_message. Needs an admin token when tokens are configured.`,
		Example: `  semprop outputs
  semprop outputs --json | jq '.[] | select(.lag > 10000) | .name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := sf.client()
			if err != nil {
				return err
			}
			outs, err := c.Outputs(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), outs)
			}
			if len(outs) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no outputs configured")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tTYPE\tSTATE\tCURSOR\tLAG\tSENT\tRETRIES\tDEAD\tDELAY P99\tLAST ERROR")
			for _, o := range outs {
				last := "-"
				if o.LastError != "" {
					last = o.LastErrorAt.Local().Format(time.DateTime) + " " + o.LastError
				}
				typ := o.Type
				if o.Publish != "" {
					typ += "/" + o.Publish
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%v\t%s\n", o.Name, typ, o.State, o.Cursor, o.Lag,
					o.Sent, o.Retries, o.DeadLettered, o.DelayP99, last)
			}
			return tw.Flush()
		},
	}
	sf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
