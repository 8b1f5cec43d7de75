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
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

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
	var path, filter, since, format, group, name string
	var settle time.Duration
	var fromBeginning bool
	var from uint64
	var count, weight, retries int
	cmd := &cobra.Command{
		Use:   "tail [TYPE_PATTERN...]",
		Short: "Print events as they happen, one per line",
		Long: `Follow the event stream and print one event per line: CloudEvents JSON
(--format json, the default) or an aligned human line (--format text: time,
type, path, comm[pid], size).

TYPE_PATTERN selects event types with NATS semantics: "*" matches one token,
">" the rest ("fs.>", "*.insert"); several patterns select any of them. By
default tail starts with new events. --since starts elsewhere: after a seq
(--since 1200), now, or at the first event of a time (--since 10m for the
last ten minutes, --since 2026-12-05T03:00:00Z), found by a binary search
over the journal. --count N stops after N events. If the connection drops,
tail says so on stderr, reconnects and resumes without gaps or duplicates;
it gives up after --retries failed attempts in a row.

--group G joins the group G: the members of a group (tails, SSE or
WebSocket clients, Go programs) share its events, each event to one live
member, by the strategy of the group's route (round-robin unless
'semprop routes add G --strategy ...' says otherwise). A member's stream
is live: it starts now, and events written to a member that disconnects
before reading them are lost (durable consumers are the at-least-once
path).

Examples:

  semprop tail 'fs.>' --path '/data/**/*.md' --format text
  semprop tail fs.create fs.delete --since 10m --count 100
  semprop tail 'fs.write' --settle 200ms      # one event per burst of writes to a file
  semprop tail 'job.*' --group workers --name worker-1`,
		RunE: func(cmd *cobra.Command, args []string) error {
			sel := client.Selector{Path: path, Filter: filter, Settle: settle}
			if settle > 0 && (group != "" || name != "") {
				return errors.New("--settle collapses bursts of the journal's stream: a live --group or --name stream cannot settle")
			}
			for i, a := range args {
				if _, err := route.ParseSelector(a, sel.Path, sel.Filter); err != nil {
					return err // say what is wrong before connecting
				}
				if i == 0 {
					sel.Type = a
				} else {
					sel.Types = append(sel.Types, a)
				}
			}
			if len(args) == 0 {
				if _, err := route.ParseSelector("", sel.Path, sel.Filter); err != nil {
					return err
				}
			}
			f := cmd.Flags()
			starts := 0
			for _, n := range []string{"since", "from", "from-beginning"} {
				if f.Changed(n) {
					starts++
				}
			}
			switch {
			case starts > 1:
				return errors.New("--since, --from and --from-beginning exclude each other")
			case group != "" && starts > 0:
				return errors.New("--group joins the live stream at now: it takes no --since, --from or --from-beginning")
			case name != "" && group == "" && starts > 0:
				return errors.New("--name makes a live route target: it takes no --since, --from or --from-beginning")
			case group != "" && len(args) > 1:
				return errors.New("--group takes one TYPE_PATTERN: the group's route has one")
			case weight != 0 && group == "":
				return errors.New("--weight needs --group")
			case count < 0:
				return errors.New("--count must be positive")
			case format != "json" && format != "text":
				return fmt.Errorf("--format %q: want json or text", format)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := sf.client()
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			c = c.WithRetries(retries).WithOnReconnect(func(err error, attempt int) {
				if attempt == 0 {
					fmt.Fprintf(stderr, "semprop tail: stream ended (%v); reconnecting\n", err)
					return
				}
				if retries < 0 {
					fmt.Fprintf(stderr, "semprop tail: cannot connect (%v); retrying (attempt %d)\n", err, attempt)
					return
				}
				fmt.Fprintf(stderr, "semprop tail: cannot connect (%v); retrying (%d of %d)\n", err, attempt, retries)
			})
			w := bufio.NewWriter(cmd.OutOrStdout())
			buf := make([]byte, 0, 1024)
			seen := 0
			errCount := errors.New("count reached")
			print := func(ev *event.Event) error {
				if format == "text" {
					buf = appendTextLine(buf[:0], ev)
				} else {
					buf = append(ev.AppendJSON(buf[:0]), '\n')
				}
				if _, err := w.Write(buf); err != nil {
					return err
				}
				if err := w.Flush(); err != nil {
					return err
				}
				if seen++; count > 0 && seen >= count {
					return errCount
				}
				return nil
			}
			switch {
			case group != "" || name != "":
				err = c.StreamGroup(ctx, sel, client.Member{Group: group, Name: name, Weight: weight}, print)
			case f.Changed("from"):
				err = c.Stream(ctx, sel, from, print)
			case fromBeginning:
				err = c.Stream(ctx, sel, 0, print)
			case since == "" || since == "now":
				err = c.StreamNew(ctx, sel, print)
			default:
				if n, perr := strconv.ParseUint(since, 10, 64); perr == nil {
					err = c.Stream(ctx, sel, n, print)
				} else {
					err = c.StreamSince(ctx, sel, since, print)
				}
			}
			switch {
			case errors.Is(err, errCount), errors.Is(err, context.Canceled):
				return nil
			case errors.Is(err, client.ErrMalformed):
				return fmt.Errorf("%w (to skip it, restart with --since SEQ past it)", err)
			}
			return err
		},
	}
	sf.register(cmd)
	cmd.Flags().StringVar(&path, "path", "", "select subjects matching this glob ('/data/**/*.md')")
	cmd.Flags().StringVar(&filter, "filter", "", "select events matching this expression ('size > 0')")
	cmd.Flags().StringVar(&since, "since", "", "start after SEQ, at now, or at the first event of a time: a duration back (10m) or RFC 3339")
	cmd.Flags().BoolVar(&fromBeginning, "from-beginning", false, "start from the first event in the journal")
	cmd.Flags().Uint64Var(&from, "from", 0, "start after this seq (as --since SEQ)")
	cmd.Flags().IntVar(&count, "count", 0, "exit after this many events (0: never)")
	cmd.Flags().DurationVar(&settle, "settle", 0, "collapse a burst on one path into one event (the last, with count and first) once the path is quiet this long (e.g. 200ms)")
	cmd.Flags().StringVar(&format, "format", "json", "json (CloudEvents, one per line) or text (time, type, path, comm[pid], size)")
	cmd.Flags().StringVar(&group, "group", "", "join this group: share its events with its other members")
	cmd.Flags().StringVar(&name, "name", "", "name this live stream (a target for routes; unique)")
	cmd.Flags().IntVar(&weight, "weight", 0, "this member's share in a weighted group")
	cmd.Flags().IntVar(&retries, "retries", client.DefaultRetries, "failed connection attempts in a row before giving up (-1: never)")
	return cmd
}

// appendTextLine appends one aligned human line for ev: time, type, path,
// comm[pid] and size (file size, or the data's length for application
// events), "-" for what the event does not say.
func appendTextLine(b []byte, ev *event.Event) []byte {
	pad := func(b []byte, s string, width int) []byte {
		b = append(b, s...)
		for n := utf8.RuneCountInString(s); n < width; n++ {
			b = append(b, ' ')
		}
		return append(b, ' ')
	}
	b = pad(b, ev.Time.Local().Format("2006-01-02 15:04:05.000"), 23)
	b = pad(b, ev.Type, 16)
	subject := ev.Subject
	if subject == "" {
		subject = "-"
	}
	b = pad(b, strings.Map(printable, subject), 40)
	proc := "-"
	if ev.Context.Has(event.HasPID) || ev.Context.Comm != "" {
		proc = strings.Map(printable, ev.Context.Comm) + "[" + strconv.FormatInt(int64(ev.Context.PID), 10) + "]"
	}
	b = pad(b, proc, 20)
	switch {
	case ev.Context.Has(event.HasSize):
		b = strconv.AppendInt(b, ev.Context.Size, 10)
	case len(ev.Data) > 0:
		b = strconv.AppendInt(b, int64(len(ev.Data)), 10)
	default:
		b = append(b, '-')
	}
	return append(b, '\n')
}

// printable replaces control characters (a file name may hold a line
// break) so that one event stays on one line.
func printable(r rune) rune {
	if unicode.IsControl(r) {
		return '?'
	}
	return r
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
