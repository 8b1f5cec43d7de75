package rules

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/cep"
)

// ErrEvents is wrapped by errors in a recorded event log.
var ErrEvents = errors.New("rules: invalid event log")

// TestOptions adjust Test. The zero value is what `semprop rules test`
// uses by default.
type TestOptions struct {
	Lateness time.Duration // allowed lateness (default 0: events in time order)
	Limits   cep.Limits
	MaxRate  int // default matches per minute for rules without max_rate; 0: unlimited
	MaxDepth int // depth limit for rules on matches; 0: DefaultMaxDepth
	// Feedback feeds each match back as a semprop.rule.match event right
	// after the event that completed it, as the daemon reads its matches
	// back from the journal, so that rules on matches can be tested. A
	// fed-back match gets seq FeedbackSeq+n (n from 0) and enters at the
	// watermark.
	Feedback bool
}

// FeedbackSeq is the first seq given to matches fed back by Test.
const FeedbackSeq = 1 << 40

// Test runs the enabled rules of set over events, CloudEvents JSON objects
// one per line as GET /v1/events returns them, with event time from the
// events, and writes each match's data (MatchData) as one JSON line, in
// the order the engine emits them. The output depends only on the inputs.
// An event without a seq gets its line number; seqs must be distinct.
// With opts.Feedback, matches are fed back as input (see TestOptions);
// otherwise, to test a rule on matches, put match events in the log. At
// the end of the log, timers due before the
// last event's time fire, later ones do not; so do settled bursts.
func Test(w io.Writer, set *Set, events io.Reader, opts TestOptions) error {
	if opts.MaxDepth == 0 {
		opts.MaxDepth = DefaultMaxDepth
	}
	eng, err := cep.New(set.patterns(opts.MaxRate), cep.Options{Lateness: opts.Lateness, Limits: opts.Limits,
		OriginAttr: AttrRule, DepthAttr: AttrDepth, MaxDepth: opts.MaxDepth})
	if err != nil {
		return err
	}
	groups := groupsFor(set, nil) // settled rules (settle.go)
	bw := bufio.NewWriter(w)
	fed := uint64(0)
	var write func(ms []cep.Match) error
	write = func(ms []cep.Match) error {
		var back []*event.Event
		for i := range ms {
			r := set.Rule(ms[i].Pattern)
			d := matchData(r, &ms[i])
			b, err := json.Marshal(d)
			if err != nil {
				return err
			}
			bw.Write(b)
			bw.WriteByte('\n')
			if opts.Feedback {
				ev := matchEvent(r, &ms[i], "semprop://rules-test")
				ev.Seq = FeedbackSeq + fed
				fed++
				back = append(back, ev)
			}
		}
		// ms is the engine's buffer: it is written out before the
		// engine runs again.
		for _, ev := range back {
			if wm := eng.Watermark(); ev.Time.UnixNano() < wm {
				ev.Time = time.Unix(0, wm).UTC()
			}
			if err := write(eng.Process(ev)); err != nil {
				return err
			}
		}
		return nil
	}
	sc := bufio.NewScanner(events)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	seen := make(map[uint64]int)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		ev := new(event.Event)
		if err := ev.UnmarshalJSON([]byte(text)); err != nil {
			return fmt.Errorf("events line %d: %w: %w", line, err, ErrEvents)
		}
		if ev.Time.IsZero() {
			return fmt.Errorf("events line %d: no time: %w", line, ErrEvents)
		}
		if ev.Seq == 0 {
			ev.Seq = uint64(line)
		}
		if prev, dup := seen[ev.Seq]; dup {
			return fmt.Errorf("events line %d: seq %d also on line %d: %w", line, ev.Seq, prev, ErrEvents)
		}
		seen[ev.Seq] = line
		settled := append(groups.due(ev.Time.UnixNano()), groups.add(ev)...)
		for _, s := range settled {
			if err := write(eng.Process(s)); err != nil {
				return err
			}
		}
		if err := write(eng.Process(ev)); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("events line %d: %w: %w", line+1, err, ErrEvents)
	}
	if err := write(eng.Flush()); err != nil {
		return err
	}
	return bw.Flush()
}

// Lint loads the rules in paths and writes one line per rule (its kind,
// where it is defined, the event types it reads) with warnings about
// costly or unbounded rules. It returns the load error, if any.
func Lint(w io.Writer, paths ...string) error {
	set, err := Load(paths...)
	if err != nil {
		return err
	}
	for _, r := range set.Rules {
		types := "every type"
		if t := r.pattern.Types; t != nil {
			types = strings.Join(t, ",")
		}
		state := "enabled"
		if !r.Enabled {
			state = "disabled"
		}
		fmt.Fprintf(w, "%s:%d: %s: %s, %s, reads %s\n", r.File, r.Line, r.Name, r.kind, state, types)
		if r.pattern.Types == nil {
			fmt.Fprintf(w, "%s:%d: %s: warning: its conditions do not say which event types they accept (type == \"...\"), so it is evaluated for every event\n", r.File, r.Line, r.Name)
		}
		if (r.kind == cep.KindCount || r.kind == cep.KindSequence) && r.Within == 0 {
			fmt.Fprintf(w, "%s:%d: %s: warning: no within: partial matches are kept until the state limits evict them\n", r.File, r.Line, r.Name)
		}
	}
	fmt.Fprintf(w, "%d rule(s) ok\n", len(set.Rules))
	return nil
}
