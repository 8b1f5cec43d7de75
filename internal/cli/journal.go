package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
)

func newJournalCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "journal",
		Short: "Check and describe a journal directory offline",
		Long: `Offline tools for a journal directory (DATA/journal, or DATA itself). Run
them on a stopped daemon's journal: they read every record and change nothing.`,
	}
	var asJSON bool
	verify := &cobra.Command{
		Use:   "verify DIR",
		Short: "Check every record's CRC and seq; report what is wrong and where",
		Long: `Read every record of every segment, checking CRCs, seq continuity within and
across segments, and the clean-shutdown marker. Unlike the daemon's start-up
it does not stop at the first problem. Exits 0 when the journal is sound, 1
when it found problems (each with its file and byte offset).

Example:

  semprop journal verify ./semprop-data`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := journal.Verify(journalDir(args[0]))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var records uint64
			for _, s := range r.Segments {
				records += s.Records
			}
			if asJSON {
				if err := writeJSONOut(out, verifyJSON(r)); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(out, "%s: %d segments, %d records, clean shutdown: %v\n", r.Dir, len(r.Segments), records, r.Clean)
				for _, s := range r.Segments {
					if s.Torn > 0 {
						fmt.Fprintf(out, "torn tail: %s: %d bytes after seq %d would be cut at the next start (%s)\n", s.File, s.Torn, s.Last, s.TornWhy)
					}
				}
				for _, p := range r.Problems {
					fmt.Fprintf(out, "problem: %v\n", p)
				}
				if len(r.Problems) == 0 {
					fmt.Fprintln(out, "ok")
				}
			}
			if len(r.Problems) > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	verify.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	inspect := &cobra.Command{
		Use:   "inspect DIR",
		Short: "List the segments with their seq and time ranges and sizes",
		Long: `List every segment: first and last seq, record count, size, and the times of
its first and last events.

Example:

  semprop journal inspect ./semprop-data`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := journal.Verify(journalDir(args[0]))
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), verifyJSON(r))
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEGMENT\tFIRST\tLAST\tRECORDS\tBYTES\tFROM\tTO\tSTATE")
			for _, s := range r.Segments {
				state := "ok"
				switch {
				case s.Problem != nil:
					state = "damaged"
				case s.Torn > 0:
					state = "torn tail"
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", filepath.Base(s.File), s.First, s.Last, s.Records, s.Bytes,
					eventTime(s.FirstPayload), eventTime(s.LastPayload), state)
			}
			return tw.Flush()
		},
	}
	inspect.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.AddCommand(verify, inspect)
	return cmd
}

// journalDir accepts a data directory or its journal directory.
func journalDir(dir string) string {
	if st, err := os.Stat(filepath.Join(dir, "journal")); err == nil && st.IsDir() {
		return filepath.Join(dir, "journal")
	}
	return dir
}

// eventTime is the time of the event encoded in payload, or "-".
func eventTime(payload []byte) string {
	if payload == nil {
		return "-"
	}
	var ev event.Event
	if err := ev.UnmarshalBinary(payload); err != nil || ev.Time.IsZero() {
		return "?"
	}
	return ev.Time.UTC().Format(time.RFC3339)
}

type segmentJSON struct {
	File    string `json:"file"`
	First   uint64 `json:"first_seq"`
	Last    uint64 `json:"last_seq"`
	Records uint64 `json:"records"`
	Bytes   int64  `json:"bytes"`
	From    string `json:"from,omitempty"`
	To      string `json:"to,omitempty"`
	Torn    int64  `json:"torn_bytes,omitempty"`
	Problem string `json:"problem,omitempty"`
}

type reportJSON struct {
	Dir      string        `json:"dir"`
	Clean    bool          `json:"clean"`
	Segments []segmentJSON `json:"segments"`
	Problems []string      `json:"problems"`
}

func verifyJSON(r *journal.Report) reportJSON {
	out := reportJSON{Dir: r.Dir, Clean: r.Clean, Segments: []segmentJSON{}, Problems: []string{}}
	for _, s := range r.Segments {
		sj := segmentJSON{File: s.File, First: s.First, Last: s.Last, Records: s.Records, Bytes: s.Bytes,
			From: eventTime(s.FirstPayload), To: eventTime(s.LastPayload), Torn: s.Torn}
		if s.Problem != nil {
			sj.Problem = s.Problem.Error()
		}
		out.Segments = append(out.Segments, sj)
	}
	for _, p := range r.Problems {
		out.Problems = append(out.Problems, p.Error())
	}
	return out
}
