package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/atomicfile"
	"github.com/semprop/semprop/internal/cep"
	"github.com/semprop/semprop/internal/journal"
)

// Source reads the durable event stream in seq order, from a seq given
// when it is opened. *propagate.Reader implements it.
type Source interface {
	// Next decodes the next durable event into ev, waiting until ctx ends.
	Next(ctx context.Context, ev *event.Event) error
	// TryNext decodes the next durable event into ev if there is one.
	TryNext(ev *event.Event) (bool, error)
	Close() error
}

// Publisher publishes an event and returns once it is durable.
// *propagate.Manager implements it.
type Publisher interface {
	Publish(ctx context.Context, ev *event.Event) (uint64, error)
}

// Options configure an Engine.
type Options struct {
	// Dir holds the checkpoint (cursor and engine state). Required.
	Dir string
	// Open returns a Source whose first event is the first durable one
	// with seq >= from. Required.
	Open func(from uint64) (Source, error)
	// Publisher publishes matches. Required.
	Publisher Publisher
	// Start is the first seq read when there is no checkpoint yet (0: the
	// beginning of the journal).
	Start uint64
	// Source is the CloudEvents source of published matches; "" lets the
	// publisher fill it.
	Source   string
	Lateness time.Duration
	Limits   cep.Limits
	// MaxRate is the default limit of matches per minute (event time) of
	// rules without max_rate; 0: unlimited.
	MaxRate int
	// MaxDepth: events of this match depth or more are shown to no rule
	// (0: DefaultMaxDepth).
	MaxDepth int
	// CheckpointEvery is how often the checkpoint is written while events
	// flow (default 1s); it is also written when Run returns.
	CheckpointEvery time.Duration
	// IdleAdvance, if positive: after this long without events, the
	// watermark moves to the wall clock minus IdleAdvance, so that
	// absent and not_followed_by timers fire on a quiet stream.
	IdleAdvance time.Duration
	Logger      *slog.Logger
	// Now is the wall clock for IdleAdvance (default time.Now).
	Now func() time.Time
}

// Engine runs a rule set over the durable stream: it reads events from
// the journal at a persisted cursor, matches them, and publishes each
// match as a semprop.rule.match event. It is safe for concurrent use:
// Run is called once; Reload, SetEnabled, Rules and Stats may be called
// from other goroutines while it runs.
//
// # Exactly once
//
// Matching is deterministic given the events read in seq order (and the
// idle ticks, see below). The checkpoint holds the cursor c and the state
// after the events up to c, and is written only after every match those
// events produced is durable. After a crash the engine restores the
// checkpoint and reads again from c+1, so it recomputes exactly the
// matches that came after c. A match carries an ID derived from its rule,
// key, time and seqs (MatchID); before replaying, the engine reads the
// journal from c+1 to its end and collects the IDs of the rule events
// there: a recomputed match whose ID is among them was published before
// the crash and is not published again. Matches are thus neither lost
// (the checkpoint never passes an unpublished match) nor repeated.
//
// A timer match that an idle tick fired carries the deadline as its
// time; when the engine reads it back from the journal it moves its
// watermark past that deadline first, so that a replay fires the timer
// at the same place in the stream. A tick that fired nothing is not
// replayed; its only effect was on which later events were late.
type Engine struct {
	opts Options
	log  *slog.Logger

	saveMu sync.Mutex // serializes checkpoint writes; taken before mu

	mu     sync.Mutex // guards the fields below
	set    *Set
	eng    *cep.Engine
	groups settleGroups // the bursts of settled rules
	cursor uint64       // last seq matched

	savedCursor uint64 // cursor of the last checkpoint written

	lastSave time.Time // when the last checkpoint was written

	// Run's goroutine only:
	dedupe      map[event.ID]struct{} // IDs of rule events after the checkpoint
	dedupeUntil uint64                // the journal's end when dedupe was built

	published atomic.Uint64
	skipped   atomic.Uint64 // matches already published before a crash
	gaps      atomic.Uint64 // events lost to retention before they were read
}

// Stats are the engine's counters.
type Stats struct {
	Cursor    uint64 `json:"cursor"`    // last seq matched
	Published uint64 `json:"published"` // rule events published
	Skipped   uint64 `json:"skipped"`   // recomputed after a crash, already published
	Late      uint64 `json:"late"`      // events dropped as late
	Gaps      uint64 `json:"gaps"`      // events lost to retention before the engine read them
}

// Info describes one rule and its counters.
type Info struct {
	Name     string       `json:"name"`
	Kind     string       `json:"kind"`
	Severity string       `json:"severity"`
	Tags     []string     `json:"tags,omitempty"`
	Enabled  bool         `json:"enabled"`
	File     string       `json:"file"`
	Line     int          `json:"line"`
	Counters cep.Counters `json:"counters"`
}

// checkpoint is the file Dir/checkpoint.json.
type checkpoint struct {
	Version int             `json:"v"`
	Cursor  uint64          `json:"cursor"`
	State   json.RawMessage `json:"state"`
	Settle  []snapBurst     `json:"settle,omitempty"` // bursts of settled rules still settling
}

const checkpointFile = "checkpoint.json"

// NewEngine returns an engine for set, restored from the checkpoint in
// opts.Dir if there is one (rules whose definition changed since start
// empty).
func NewEngine(set *Set, opts Options) (*Engine, error) {
	if opts.Dir == "" || opts.Open == nil || opts.Publisher == nil {
		return nil, errors.New("rules: Options.Dir, Open and Publisher are required")
	}
	if opts.MaxDepth == 0 {
		opts.MaxDepth = DefaultMaxDepth
	}
	if opts.CheckpointEvery <= 0 {
		opts.CheckpointEvery = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	e := &Engine{opts: opts, log: opts.Logger, set: set}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	eng, err := cep.New(set.patterns(opts.MaxRate), e.cepOptions())
	if err != nil {
		return nil, err
	}
	e.eng = eng
	e.groups = groupsFor(set, nil)
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(opts.Dir, checkpointFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		e.cursor = max(opts.Start, 1) - 1
	case err != nil:
		return nil, fmt.Errorf("rules: checkpoint: %w", err)
	default:
		var cp checkpoint
		if err := json.Unmarshal(data, &cp); err != nil {
			return nil, fmt.Errorf("rules: checkpoint: %w", err)
		}
		if err := e.eng.Restore(cp.State); err != nil {
			return nil, fmt.Errorf("rules: checkpoint: %w", err)
		}
		if err := e.groups.restore(cp.Settle); err != nil {
			return nil, fmt.Errorf("rules: checkpoint: %w", err)
		}
		e.cursor = cp.Cursor
	}
	e.savedCursor = e.cursor
	return e, nil
}

func (e *Engine) cepOptions() cep.Options {
	return cep.Options{Lateness: e.opts.Lateness, Limits: e.opts.Limits,
		OriginAttr: AttrRule, DepthAttr: AttrDepth, MaxDepth: e.opts.MaxDepth}
}

// Run reads and matches events until ctx ends or reading or publishing
// fails, then writes the checkpoint. It returns ctx.Err() on a normal stop.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	from := e.cursor + 1
	e.mu.Unlock()
	if err := e.scan(from); err != nil {
		return err
	}
	src, err := e.open(from, true)
	if err != nil {
		return err
	}
	defer src.Close()
	e.mu.Lock()
	e.lastSave = e.opts.Now()
	e.mu.Unlock()
	err = e.loop(ctx, src)
	if err != nil && ctx.Err() != nil {
		// Stopped while reading or publishing: the publish that ctx cut
		// was not acknowledged, so the checkpoint does not cover it and
		// the next run publishes it again.
		err = ctx.Err()
	}
	if serr := e.Checkpoint(); serr != nil && err == nil {
		err = serr
	}
	return err
}

// open opens a Source at from, or at the first retained event if
// retention deleted from; count says whether to count the gap.
func (e *Engine) open(from uint64, count bool) (Source, error) {
	src, err := e.opts.Open(from)
	var te *journal.TruncatedError
	if errors.As(err, &te) {
		if count {
			e.log.Warn("rules: journal truncated by retention before the rules read it", "from", from, "first", te.First)
			e.gaps.Add(te.First - from)
		}
		return e.opts.Open(te.First)
	}
	return src, err
}

func (e *Engine) loop(ctx context.Context, src Source) error {
	for {
		ev := new(event.Event)
		ok, err := src.TryNext(ev)
		if err == nil && !ok {
			err = e.wait(ctx, src, ev)
			if errors.Is(err, errIdle) {
				if err := e.idle(ctx); err != nil {
					return err
				}
				continue
			}
		}
		var te *journal.TruncatedError
		if errors.As(err, &te) {
			e.mu.Lock()
			next := e.cursor + 1
			e.mu.Unlock()
			e.log.Warn("rules: journal truncated by retention before the rules read it", "next", next, "first", te.First)
			if te.First > next {
				e.gaps.Add(te.First - next)
			}
			continue // the reader resumes at te.First
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("rules: read: %w", err)
		}
		if err := e.handle(ctx, ev); err != nil {
			return err
		}
		e.mu.Lock()
		due := e.opts.Now().Sub(e.lastSave) >= e.opts.CheckpointEvery
		e.mu.Unlock()
		if due {
			if err := e.Checkpoint(); err != nil {
				return err
			}
		}
	}
}

var errIdle = errors.New("rules: idle")

// wait blocks for the next event. When the stream is caught up and the
// state changed since the last checkpoint, it writes one after
// CheckpointEvery without events, so that a quiet stream is never
// replayed far; with IdleAdvance it gives up after that long with errIdle.
func (e *Engine) wait(ctx context.Context, src Source, ev *event.Event) error {
	for {
		e.mu.Lock()
		dirty := e.cursor != e.savedCursor
		e.mu.Unlock()
		var timeout time.Duration
		switch {
		case dirty:
			timeout = e.opts.CheckpointEvery
		case e.opts.IdleAdvance > 0:
			timeout = e.opts.IdleAdvance
		default:
			return src.Next(ctx, ev)
		}
		wctx, cancel := context.WithTimeout(ctx, timeout)
		err := src.Next(wctx, ev)
		cancel()
		if err == nil || ctx.Err() != nil || wctx.Err() == nil {
			return err
		}
		if !dirty {
			return errIdle
		}
		if err := e.Checkpoint(); err != nil {
			return err
		}
	}
}

// idle moves the watermark on a quiet stream and publishes what fires.
func (e *Engine) idle(ctx context.Context) error {
	w := e.opts.Now().Add(-e.opts.IdleAdvance).UnixNano()
	e.mu.Lock()
	var out []*event.Event
	for _, s := range e.groups.due(w) {
		out = append(out, e.eventsLocked(e.eng.Process(s))...)
	}
	out = append(out, e.eventsLocked(e.eng.AdvanceTo(w))...)
	e.mu.Unlock()
	if len(out) == 0 {
		return nil
	}
	if err := e.publish(ctx, out); err != nil {
		return err
	}
	return e.Checkpoint()
}

// handle matches one event and publishes its matches.
func (e *Engine) handle(ctx context.Context, ev *event.Event) error {
	e.mu.Lock()
	var out []*event.Event
	if name, _ := ev.Attr(AttrRule); name != "" {
		// A rule event read back (a match, a throttle notice, or an
		// action's outcome or emitted event, which carry the rule too): a
		// timer match moves the watermark past its deadline (replaying an
		// idle tick), and a rule event enters the stream no earlier than
		// the watermark, so rules on rule events never see them as late.
		if r := e.set.Rule(name); r != nil && (r.kind == cep.KindAbsent || r.kind == cep.KindNotFollowedBy) && ev.Type == TypeMatch {
			out = append(out, e.eventsLocked(e.eng.AdvanceTo(ev.Time.UnixNano()+1))...)
		}
		if w := e.eng.Watermark(); ev.Time.UnixNano() < w {
			ev.Time = time.Unix(0, w).UTC()
		}
	}
	if len(e.groups) > 0 {
		// Settled rules: the bursts this event shows quiet, then the
		// event into its bursts.
		for _, s := range e.groups.due(ev.Time.UnixNano()) {
			out = append(out, e.eventsLocked(e.eng.Process(s))...)
		}
		for _, s := range e.groups.add(ev) {
			out = append(out, e.eventsLocked(e.eng.Process(s))...)
		}
	}
	out = append(out, e.eventsLocked(e.eng.Process(ev))...)
	e.cursor = ev.Seq
	e.mu.Unlock()
	if e.dedupe != nil && ev.Seq >= e.dedupeUntil {
		e.dedupe = nil // replay is past everything published before the crash
	}
	return e.publish(ctx, out)
}

// eventsLocked builds the events of matches.
func (e *Engine) eventsLocked(ms []cep.Match) []*event.Event {
	if len(ms) == 0 {
		return nil
	}
	out := make([]*event.Event, 0, len(ms))
	for i := range ms {
		r := e.set.Rule(ms[i].Pattern)
		out = append(out, matchEvent(r, &ms[i], e.opts.Source))
	}
	return out
}

func (e *Engine) publish(ctx context.Context, evs []*event.Event) error {
	for _, ev := range evs {
		if _, dup := e.dedupe[ev.ID]; dup {
			e.skipped.Add(1)
			continue
		}
		if _, err := e.opts.Publisher.Publish(ctx, ev); err != nil {
			return fmt.Errorf("rules: publish %s: %w", ev.Type, err)
		}
		e.published.Add(1)
	}
	return nil
}

// scan collects the IDs of the rule events in the journal from seq from
// to its durable end: what a previous run published after its checkpoint.
func (e *Engine) scan(from uint64) error {
	src, err := e.open(from, false)
	if err != nil {
		return err
	}
	defer src.Close()
	e.dedupe = nil
	for {
		var ev event.Event
		ok, err := src.TryNext(&ev)
		var te *journal.TruncatedError
		if errors.As(err, &te) {
			continue
		}
		if err != nil {
			return fmt.Errorf("rules: scan: %w", err)
		}
		if !ok {
			return nil
		}
		if ev.Type == TypeMatch || ev.Type == TypeThrottled {
			if e.dedupe == nil {
				e.dedupe = make(map[event.ID]struct{})
			}
			e.dedupe[ev.ID] = struct{}{}
			e.dedupeUntil = ev.Seq
		}
	}
}

// Checkpoint writes the cursor and the engine's state atomically (a
// temporary file, fsync, rename, fsync of the directory). Run calls it
// every CheckpointEvery while events flow, CheckpointEvery after the
// stream went quiet, and on return; it is safe to call at any time.
func (e *Engine) Checkpoint() error {
	e.saveMu.Lock()
	defer e.saveMu.Unlock()
	e.mu.Lock()
	state, err := e.eng.Snapshot()
	bursts, serr := e.groups.snapshot()
	cursor := e.cursor
	e.mu.Unlock()
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("rules: checkpoint: %w", err)
	}
	data, err := json.Marshal(checkpoint{Version: 1, Cursor: cursor, State: state, Settle: bursts})
	if err != nil {
		return fmt.Errorf("rules: checkpoint: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(e.opts.Dir, checkpointFile), data, 0o644); err != nil {
		return fmt.Errorf("rules: checkpoint: %w", err)
	}
	e.mu.Lock()
	e.savedCursor = cursor
	e.lastSave = e.opts.Now()
	e.mu.Unlock()
	return nil
}

// Reload swaps in a new rule set atomically: rules whose definition did
// not change keep their state and counters; the others start empty. On
// error the running set is unchanged.
func (e *Engine) Reload(set *Set) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.eng.Replace(set.patterns(e.opts.MaxRate)); err != nil {
		return err
	}
	e.set = set
	e.groups = groupsFor(set, e.groups)
	return nil
}

// SetEnabled enables or disables the rule called name at run time. A
// disabled rule loses its state.
func (e *Engine) SetEnabled(name string, on bool) error {
	e.mu.Lock()
	cur := e.set
	e.mu.Unlock()
	if cur.Rule(name) == nil {
		return fmt.Errorf("%w: %q", ErrNoSuchRule, name)
	}
	next := &Set{Rules: make([]*Rule, len(cur.Rules))}
	for i, r := range cur.Rules {
		if r.Name == name {
			c := *r
			c.Enabled = on
			r = &c
		}
		next.Rules[i] = r
	}
	return e.Reload(next)
}

// Rules describes every rule of the running set, with counters for the
// enabled ones.
func (e *Engine) Rules() []Info {
	e.mu.Lock()
	defer e.mu.Unlock()
	idx := make(map[string]int, e.eng.Len())
	for i := range e.eng.Len() {
		idx[e.eng.Pattern(i).Name] = i
	}
	out := make([]Info, 0, len(e.set.Rules))
	for _, r := range e.set.Rules {
		in := Info{Name: r.Name, Kind: r.kind.String(), Severity: r.Severity, Tags: r.Tags,
			Enabled: r.Enabled, File: r.File, Line: r.Line}
		if i, ok := idx[r.Name]; ok {
			in.Counters = e.eng.Counters(i)
		}
		out = append(out, in)
	}
	return out
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	st := Stats{Cursor: e.cursor, Late: e.eng.Late()}
	e.mu.Unlock()
	st.Published, st.Skipped, st.Gaps = e.published.Load(), e.skipped.Load(), e.gaps.Load()
	return st
}
