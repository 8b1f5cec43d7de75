package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/route"
)

func newPublishCmd() *cobra.Command {
	var sf serverFlags
	var subject, data, source, priority string
	cmd := &cobra.Command{
		Use:   "publish [TYPE]",
		Short: "Publish an event (or NDJSON CloudEvents from stdin)",
		Long: `Publish one event of type TYPE, e.g.

  semprop publish vector.insert --subject /data/notes/a.md --data '{"dims":768}'
  semprop publish doc.indexed --data @result.json
  jq -c . result.json | semprop publish doc.indexed --data -

Without TYPE (or with "-"), read CloudEvents JSON objects from stdin, one per
line, and publish them in batches of up to 1000. Prints the seq of every
event once it is durable.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := sf.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(args) == 0 || args[0] == "-" {
				return publishStdin(ctx, c, cmd.InOrStdin(), out)
			}
			ev := &event.Event{Type: args[0], Subject: subject, Source: source}
			p, ok := event.ParsePriority(priority)
			if !ok {
				return fmt.Errorf("--priority %q: want bulk, normal, high or critical", priority)
			}
			ev.Priority = p
			if data != "" {
				b, err := readData(data, cmd.InOrStdin())
				if err != nil {
					return err
				}
				var compact bytes.Buffer
				if err := json.Compact(&compact, b); err != nil {
					return errors.New("--data must be a JSON value (quote strings: '\"text\"')")
				}
				ev.Data = compact.Bytes()
				ev.DataContentType = "application/json"
			}
			ev.ID = event.NewID()
			if err := ev.Validate(event.Limits{}); err != nil {
				return err
			}
			seq, err := c.Publish(ctx, ev)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, seq)
			return nil
		},
	}
	sf.register(cmd)
	cmd.Flags().StringVar(&subject, "subject", "", "event subject (for fs.* events the path)")
	cmd.Flags().StringVar(&data, "data", "", "event data, a JSON value; @FILE reads it from FILE, - from stdin")
	cmd.Flags().StringVar(&source, "source", "", "CloudEvents source (default urn:semprop:client:HOST; semprop://… is refused)")
	cmd.Flags().StringVar(&priority, "priority", "normal", "bulk, normal, high or critical")
	return cmd
}

func publishStdin(ctx context.Context, c *client.Client, in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var batch []*event.Event
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		seqs, err := c.PublishBatch(ctx, batch)
		if err != nil {
			return err
		}
		for _, s := range seqs {
			fmt.Fprintln(out, s)
		}
		batch = batch[:0]
		return nil
	}
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		ev, err := event.ParseDraft(sc.Bytes()) // id and source may be left to the client
		if err != nil {
			return fmt.Errorf("stdin line %d: %w", line, err)
		}
		if err := ev.Validate(event.Limits{}); err != nil {
			return fmt.Errorf("stdin line %d: %w", line, err)
		}
		batch = append(batch, ev)
		if len(batch) == 1000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("stdin: %w", err)
	}
	return flush()
}

func newTailCmd() *cobra.Command {
	var sf serverFlags
	var path, filter string
	var fromBeginning bool
	var from uint64
	cmd := &cobra.Command{
		Use:   "tail [TYPE_PATTERN]",
		Short: "Print events as they happen, one CloudEvents JSON object per line",
		Long: `Follow the event stream and print one CloudEvents JSON object per line.

TYPE_PATTERN selects event types with NATS semantics: "*" matches one token,
">" the rest ("fs.>", "*.insert"). By default tail starts with new events;
--from-beginning replays the whole journal first, --from SEQ starts after SEQ.
If the connection drops, tail reconnects and resumes without gaps or
duplicates.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sel := client.Selector{Path: path, Filter: filter}
			if len(args) == 1 {
				sel.Type = args[0]
			}
			if _, err := route.ParseSelector(sel.Type, sel.Path, sel.Filter); err != nil {
				return err // say what is wrong before connecting
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := sf.client()
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("from") && fromBeginning {
				return errors.New("--from and --from-beginning exclude each other")
			}
			w := bufio.NewWriter(cmd.OutOrStdout())
			buf := make([]byte, 0, 1024)
			print := func(ev *event.Event) error {
				buf = append(ev.AppendJSON(buf[:0]), '\n')
				if _, err := w.Write(buf); err != nil {
					return err
				}
				return w.Flush()
			}
			switch {
			case cmd.Flags().Changed("from"):
				err = c.Stream(ctx, sel, from, print)
			case fromBeginning:
				err = c.Stream(ctx, sel, 0, print)
			default:
				err = c.StreamNew(ctx, sel, print)
			}
			switch {
			case errors.Is(err, context.Canceled):
				return nil
			case errors.Is(err, client.ErrMalformed):
				return fmt.Errorf("%w (to skip it, restart with --from SEQ past it)", err)
			}
			return err
		},
	}
	sf.register(cmd)
	cmd.Flags().StringVar(&path, "path", "", "select subjects matching this glob ('/data/**/*.md')")
	cmd.Flags().StringVar(&filter, "filter", "", "select events matching this expression ('size > 0')")
	cmd.Flags().BoolVar(&fromBeginning, "from-beginning", false, "start from the first event in the journal")
	cmd.Flags().Uint64Var(&from, "from", 0, "start after this seq")
	return cmd
}

// readData reads --data: a JSON value, @FILE, or - (stdin).
func readData(data string, stdin io.Reader) ([]byte, error) {
	switch {
	case data == "-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("--data -: %w", err)
		}
		return bytes.TrimSpace(b), nil
	case strings.HasPrefix(data, "@"):
		b, err := os.ReadFile(data[1:])
		if err != nil {
			return nil, fmt.Errorf("--data %s: %w", data, err)
		}
		return bytes.TrimSpace(b), nil
	}
	return []byte(data), nil
}
