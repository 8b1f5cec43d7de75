package action

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/atomicfile"
	"github.com/semprop/semprop/internal/audit"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/rules"
)

// The event types of outcomes, one per match with actions.
const (
	TypeOK         = "semprop.action.ok"         // every action done
	TypeFailed     = "semprop.action.failed"     // an action failed with nothing to roll back, or a rollback failed
	TypeRolledBack = "semprop.action.rolledback" // an action failed and the ones done before it were rolled back
)

// Outcomes of a match, as in audit records and event types.
const (
	OutcomeOK         = "ok"
	OutcomeFailed     = "failed"
	OutcomeRolledBack = "rolledback"
)

// Source reads the durable event stream in seq order. *propagate.Reader
// implements it.
type Source interface {
	Next(ctx context.Context, ev *event.Event) error
	TryNext(ev *event.Event) (bool, error)
	Close() error
}

// Options configure an Executor.
type Options struct {
	// Dir holds the cursor. Required.
	Dir string
	// Audit is the audit trail (intents and outcomes). Required.
	Audit *audit.Log
	// Open returns a Source whose first event is the first durable one
	// with seq >= from. Required.
	Open func(from uint64) (Source, error)
	// Publisher publishes outcome events and emitted ones. Required.
	Publisher Publisher
	// Registry holds the action types (default NewRegistry()).
	Registry *Registry
	// Env is what actions act with (Roots, Snapshots, ...).
	Env *Env
	// Start is the first seq read when there is no cursor yet (0: the
	// beginning of the journal).
	Start uint64
	// Source is the CloudEvents source of outcome events ("": the
	// publisher's).
	Source string
	// CursorEvery is how often the cursor is written while events without
	// actions flow (default 1s); it is written after every match with
	// actions and when Run returns.
	CursorEvery time.Duration
	// StopGrace is how long a match in progress when Run's ctx ends may
	// go on, so that a stop finishes it rather than leaving it to
	// recovery (default 10s; the actions' own timeouts bound it too).
	StopGrace time.Duration
	Logger    *slog.Logger
}

// Executor runs the actions of rule matches; see the package comment for
// its guarantees. Run is called once; SetRules and Stats may be called
// from other goroutines while it runs.
type Executor struct {
	opts Options
	log  *slog.Logger
	reg  *Registry
	env  *Env

	ownClient bool // env.HTTPClient is the executor's: idle connections closed by Run

	rules atomic.Pointer[rules.Set]

	// Run's goroutine only:
	cursor    uint64
	saved     time.Time
	state     map[string]*matchState // audit records of matches after the cursor, by match ID
	published map[event.ID]bool      // action events in the journal after the cursor

	matches, done, failed, interrupted, recovered atomic.Uint64
	rollbacks, rollbacksOK                        atomic.Uint64
	outcomes                                      [3]atomic.Uint64 // ok, failed, rolledback
}

// Stats are the executor's counters since it started.
type Stats struct {
	Cursor      uint64 `json:"cursor"`
	Matches     uint64 `json:"matches"`     // matches with actions handled
	Done        uint64 `json:"done"`        // actions done
	Failed      uint64 `json:"failed"`      // actions failed (preconditions included)
	Interrupted uint64 `json:"interrupted"` // actions in flight at a crash that cannot tell whether they ran
	Recovered   uint64 `json:"recovered"`   // in-flight actions found done after a crash
	Rollbacks   uint64 `json:"rollbacks"`   // rollbacks run
	RollbacksOK uint64 `json:"rollbacks_ok"`
	OK          uint64 `json:"ok"` // match outcomes
	Failures    uint64 `json:"failures"`
	RolledBack  uint64 `json:"rolledback"`
}

type actionState struct {
	intent, outcome, rollback, rbOutcome *audit.Record
}

type matchState struct {
	actions map[int]*actionState
	final   *audit.Record
}

type cursorFile struct {
	Cursor uint64 `json:"cursor"`
}

const cursorName = "cursor.json"

// New returns an executor for the actions of set, at its persisted cursor.
func New(set *rules.Set, opts Options) (*Executor, error) {
	if opts.Dir == "" || opts.Audit == nil || opts.Open == nil || opts.Publisher == nil {
		return nil, errors.New("action: Options.Dir, Audit, Open and Publisher are required")
	}
	if opts.CursorEvery <= 0 {
		opts.CursorEvery = time.Second
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 10 * time.Second
	}
	x := &Executor{opts: opts, log: opts.Logger, reg: opts.Registry}
	if x.log == nil {
		x.log = slog.New(slog.DiscardHandler)
	}
	if x.reg == nil {
		x.reg = NewRegistry()
	}
	env := Env{}
	if opts.Env != nil {
		env = *opts.Env
	}
	if env.Publisher == nil {
		env.Publisher = opts.Publisher
	}
	if env.Source == "" {
		env.Source = opts.Source
	}
	if env.Logger == nil {
		env.Logger = x.log
	}
	if env.HTTPClient == nil {
		env.HTTPClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		x.ownClient = true
	}
	env.published = func(id event.ID) bool { return x.published[id] }
	x.env = &env
	if err := x.reg.Check(set); err != nil {
		return nil, err
	}
	x.rules.Store(set)
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("action: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(opts.Dir, cursorName))
	switch {
	case errors.Is(err, os.ErrNotExist):
		x.cursor = max(opts.Start, 1) - 1
	case err != nil:
		return nil, fmt.Errorf("action: cursor: %w", err)
	default:
		var c cursorFile
		if err := json.Unmarshal(data, &c); err != nil {
			return nil, fmt.Errorf("action: cursor: %w", err)
		}
		x.cursor = c.Cursor
	}
	return x, nil
}

// SetRules swaps in a new rule set (after a reload): matches read from
// now on run its actions. It fails, leaving the running set, when an
// action is invalid.
func (x *Executor) SetRules(set *rules.Set) error {
	if err := x.reg.Check(set); err != nil {
		return err
	}
	x.rules.Store(set)
	return nil
}

// Stats returns the executor's counters.
func (x *Executor) Stats() Stats {
	return Stats{Cursor: atomic.LoadUint64(&x.cursor), Matches: x.matches.Load(), Done: x.done.Load(), Failed: x.failed.Load(),
		Interrupted: x.interrupted.Load(), Recovered: x.recovered.Load(), Rollbacks: x.rollbacks.Load(),
		RollbacksOK: x.rollbacksOK.Load(), OK: x.outcomes[0].Load(), Failures: x.outcomes[1].Load(), RolledBack: x.outcomes[2].Load()}
}

// Run reads matches and runs their actions until ctx ends or reading,
// publishing or the audit log fails. It returns ctx.Err() on a normal
// stop; an action in flight when ctx ends is left to recovery, as after
// a crash.
func (x *Executor) Run(ctx context.Context) error {
	from := atomic.LoadUint64(&x.cursor) + 1
	if err := x.load(from); err != nil {
		return err
	}
	if err := x.scan(from); err != nil {
		return err
	}
	src, err := x.open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	if x.ownClient {
		defer x.env.HTTPClient.CloseIdleConnections()
	}
	x.saved = time.Now()
	err = x.loop(ctx, src)
	if serr := x.saveCursor(); serr != nil && err == nil {
		err = serr
	}
	return err
}

func (x *Executor) open(from uint64) (Source, error) {
	src, err := x.opts.Open(from)
	var te *journal.TruncatedError
	if errors.As(err, &te) {
		x.log.Warn("action: journal truncated by retention before the executor read it", "from", from, "first", te.First)
		return x.opts.Open(te.First)
	}
	return src, err
}

// load reads the audit log's records of matches after the cursor.
func (x *Executor) load(from uint64) error {
	x.state = map[string]*matchState{}
	return audit.Read(x.opts.Audit.Dir(), func(r *audit.Record) error {
		if r.Match == "" || r.MatchSeq < from {
			return nil
		}
		ms := x.state[r.Match]
		if ms == nil {
			ms = &matchState{actions: map[int]*actionState{}}
			x.state[r.Match] = ms
		}
		if r.Kind == audit.KindMatch {
			ms.final = r
			return nil
		}
		as := ms.actions[r.Index]
		if as == nil {
			as = &actionState{}
			ms.actions[r.Index] = as
		}
		switch r.Kind {
		case audit.KindIntent:
			as.intent = r
		case audit.KindDone, audit.KindFailed, audit.KindInterrupted:
			as.outcome = r
		case audit.KindRollback:
			as.rollback = r
		case audit.KindRolledBack, audit.KindRollbackFailed:
			as.rbOutcome = r
		}
		return nil
	})
}

// scan collects the IDs of the action events in the journal after the
// cursor: what a previous run published.
func (x *Executor) scan(from uint64) error {
	x.published = map[event.ID]bool{}
	src, err := x.open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	for {
		var ev event.Event
		ok, err := src.TryNext(&ev)
		var te *journal.TruncatedError
		if errors.As(err, &te) {
			continue
		}
		if err != nil {
			return fmt.Errorf("action: scan: %w", err)
		}
		if !ok {
			return nil
		}
		if _, ok := ev.Attr(AttrActionKey); ok {
			x.published[ev.ID] = true
		}
	}
}

func (x *Executor) loop(ctx context.Context, src Source) error {
	for {
		ev := new(event.Event)
		ok, err := src.TryNext(ev)
		if err == nil && !ok {
			if err := x.saveIfDue(true); err != nil {
				return err
			}
			err = src.Next(ctx, ev)
		}
		var te *journal.TruncatedError
		if errors.As(err, &te) {
			x.log.Warn("action: journal truncated by retention before the executor read it", "first", te.First)
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("action: read: %w", err)
		}
		handled := false
		if ev.Type == rules.TypeMatch {
			if handled, err = x.handleGrace(ctx, ev); err != nil {
				return err
			}
		}
		atomic.StoreUint64(&x.cursor, ev.Seq)
		if err := x.saveIfDue(handled); err != nil {
			return err
		}
	}
}

func (x *Executor) saveIfDue(force bool) error {
	if !force && time.Since(x.saved) < x.opts.CursorEvery {
		return nil
	}
	return x.saveCursor()
}

func (x *Executor) saveCursor() error {
	data, _ := json.Marshal(cursorFile{Cursor: atomic.LoadUint64(&x.cursor)})
	if err := atomicfile.Write(filepath.Join(x.opts.Dir, cursorName), data, 0o600); err != nil {
		return fmt.Errorf("action: cursor: %w", err)
	}
	x.saved = time.Now()
	return nil
}

// doneAction is an action done for the match being handled.
type doneAction struct {
	index  int
	typ    string
	args   Args
	state  json.RawMessage
	result json.RawMessage
}

// match is the match being handled.
type match struct {
	ev    *event.Event
	data  rules.MatchData
	id    string
	depth int
	view  *MatchView
}

func (m *match) record(kind string, i int) *audit.Record {
	return &audit.Record{Kind: kind, Rule: m.data.Rule, Match: m.id, MatchSeq: m.ev.Seq, Index: i,
		Key: fmt.Sprintf("%s/%s/%d", m.data.Rule, m.id, i)}
}

func (x *Executor) append(r *audit.Record) error {
	if err := x.opts.Audit.Append(r); err != nil {
		return fmt.Errorf("action: audit: %w", err)
	}
	return nil
}

// handleGrace runs handle with a context that ends StopGrace after ctx.
func (x *Executor) handleGrace(ctx context.Context, ev *event.Event) (bool, error) {
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(x.opts.StopGrace, cancel)
		context.AfterFunc(actx, func() { t.Stop() })
	})
	defer stop()
	handled, err := x.handle(actx, ev)
	if err != nil && actx.Err() != nil && ctx.Err() != nil {
		err = ctx.Err() // stopped past the grace: what was in flight is recovered at the next start
	}
	return handled, err
}

// handle runs the actions of one match; it reports whether the match had
// actions.
func (x *Executor) handle(ctx context.Context, ev *event.Event) (bool, error) {
	m := &match{ev: ev, id: ev.ID.String()}
	if err := json.Unmarshal(ev.Data, &m.data); err != nil || m.data.Rule == "" {
		x.log.Warn("action: a rule match with bad data", "seq", ev.Seq, "err", err)
		return false, nil
	}
	m.depth, _ = strconv.Atoi(attr(ev, rules.AttrDepth))
	ms := x.state[m.id]
	var specs []rules.ActionSpec
	if r := x.rules.Load().Rule(m.data.Rule); r != nil {
		specs = r.Actions
	}
	if ms == nil && len(specs) == 0 {
		return false, nil
	}
	if ms == nil {
		ms = &matchState{actions: map[int]*actionState{}}
	}
	if ms.final != nil { // done before a crash; perhaps not published
		err := x.publishOutcome(ctx, m, ms.final)
		delete(x.state, m.id)
		return true, err
	}
	x.matches.Add(1)
	n := len(specs)
	for i := range ms.actions {
		n = max(n, i+1)
	}
	var (
		done     []doneAction
		failedAt = -1
		failure  string
	)
	for i := 0; i < n && failedAt < 0; i++ {
		as := ms.actions[i]
		if as == nil {
			as = &actionState{}
		}
		var d *doneAction
		var err error
		switch {
		case as.outcome != nil && as.outcome.Kind == audit.KindDone:
			d = &doneAction{index: i, typ: as.intent.Type, args: as.intent.Args, state: as.intent.State, result: as.outcome.Result}
		case as.outcome != nil:
			failedAt, failure = i, as.outcome.Error
		case as.intent != nil:
			d, err = x.recover(ctx, m, as.intent)
		case i < len(specs):
			d, err = x.run(ctx, m, i, specs[i])
		default:
			continue // the rule lost actions since a crash: none was started
		}
		if ctx.Err() != nil {
			return true, ctx.Err() // shutting down: the action in flight is recovered at the next start
		}
		if err != nil {
			var af *actionFailed
			if !errors.As(err, &af) {
				return true, err
			}
			failedAt, failure = i, af.msg
			continue
		}
		if d != nil {
			done = append(done, *d)
		}
	}
	outcome := OutcomeOK
	rbFailed := 0
	if failedAt >= 0 {
		for j := len(done) - 1; j >= 0; j-- {
			ok, err := x.rollback(ctx, m, ms.actions[done[j].index], done[j])
			if ctx.Err() != nil {
				return true, ctx.Err()
			}
			if err != nil {
				return true, err
			}
			if !ok {
				rbFailed++
			}
		}
		outcome = OutcomeFailed
		if len(done) > 0 && rbFailed == 0 {
			outcome = OutcomeRolledBack
		}
	}
	final := m.record(audit.KindMatch, failedAt)
	final.Key = m.data.Rule + "/" + m.id
	final.Seqs, final.Outcome, final.Error = m.data.Seqs, outcome, failure
	if err := x.append(final); err != nil {
		return true, err
	}
	switch outcome {
	case OutcomeOK:
		x.outcomes[0].Add(1)
	case OutcomeFailed:
		x.outcomes[1].Add(1)
	default:
		x.outcomes[2].Add(1)
	}
	err := x.publishOutcome(ctx, m, final)
	delete(x.state, m.id)
	return true, err
}

func attr(ev *event.Event, k string) string {
	v, _ := ev.Attr(k)
	return v
}

// actionFailed is an action's failure, already audited.
type actionFailed struct{ msg string }

func (e *actionFailed) Error() string { return e.msg }

// viewOf builds the match's template view, reading the matched events.
func (x *Executor) matchView(m *match) *MatchView {
	if m.view != nil {
		return m.view
	}
	var evs []*event.Event
	for _, s := range m.data.Seqs {
		src, err := x.opts.Open(s)
		if err != nil {
			continue // gone to retention
		}
		ev := new(event.Event)
		if ok, err := src.TryNext(ev); err == nil && ok && ev.Seq == s {
			evs = append(evs, ev)
		}
		src.Close()
	}
	m.view = newMatchView(m.ev, &m.data, evs)
	return m.view
}

func (x *Executor) call(m *match, key string, args Args) *Call {
	return &Call{Env: x.env, Args: args, Key: key, Rule: m.data.Rule, Match: x.matchView(m), Depth: m.depth}
}

// fail records an action's failure and returns it as an *actionFailed.
func (x *Executor) fail(r *audit.Record, kind string, err error) error {
	r.Kind, r.Error = kind, err.Error()
	if aerr := x.append(r); aerr != nil {
		return aerr
	}
	if kind == audit.KindInterrupted {
		x.interrupted.Add(1)
	} else {
		x.failed.Add(1)
	}
	x.log.Warn("action failed", "key", r.Key, "type", r.Type, "err", err)
	return &actionFailed{msg: fmt.Sprintf("action %d (%s): %v", r.Index, r.Type, err)}
}

// run validates, records the intent, executes and records the outcome
// of a fresh action.
func (x *Executor) run(ctx context.Context, m *match, i int, spec rules.ActionSpec) (*doneAction, error) {
	rec := m.record(audit.KindFailed, i)
	rec.Type = spec.Type
	view := x.matchView(m)
	args, err := render(spec, view)
	if err != nil {
		return nil, x.fail(rec, audit.KindFailed, err)
	}
	rec.Args = args
	t, ok := x.reg.Lookup(spec.Type)
	if !ok {
		return nil, x.fail(rec, audit.KindFailed, fmt.Errorf("%q: %w", spec.Type, ErrUnknownType))
	}
	act, err := t.New(x.call(m, rec.Key, args))
	if err != nil {
		return nil, x.fail(rec, audit.KindFailed, err)
	}
	checks, state, err := act.Validate(ctx)
	rec.Preconditions = checks
	if err != nil {
		return nil, x.fail(rec, audit.KindFailed, err)
	}
	intent := *rec
	intent.Kind, intent.State, intent.Seqs = audit.KindIntent, state, m.data.Seqs
	if err := x.append(&intent); err != nil {
		return nil, err
	}
	return x.execute(ctx, m, &intent, act)
}

// execute runs an action whose intent is recorded and records its outcome.
func (x *Executor) execute(ctx context.Context, m *match, intent *audit.Record, act Action) (*doneAction, error) {
	start := time.Now()
	res, err := act.Execute(ctx, intent.State)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	out := m.record(audit.KindDone, intent.Index)
	out.Type, out.Result, out.DurationNS = intent.Type, res, time.Since(start).Nanoseconds()
	if err != nil {
		return nil, x.fail(out, audit.KindFailed, err)
	}
	if err := x.append(out); err != nil {
		return nil, err
	}
	x.done.Add(1)
	return &doneAction{index: intent.Index, typ: intent.Type, args: intent.Args, state: intent.State, result: res}, nil
}

// recover finishes an action that was in flight at a crash.
func (x *Executor) recover(ctx context.Context, m *match, intent *audit.Record) (*doneAction, error) {
	out := m.record(audit.KindInterrupted, intent.Index)
	out.Type = intent.Type
	t, ok := x.reg.Lookup(intent.Type)
	if !ok {
		return nil, x.fail(out, audit.KindInterrupted, fmt.Errorf("%q: %w", intent.Type, ErrUnknownType))
	}
	act, err := t.New(x.call(m, intent.Key, intent.Args))
	if err != nil {
		return nil, x.fail(out, audit.KindInterrupted, err)
	}
	rc, ok := act.(Recoverer)
	if !ok {
		return nil, x.fail(out, audit.KindInterrupted, ErrInterrupted)
	}
	res, did, err := rc.Recover(ctx, intent.State)
	if err != nil {
		return nil, x.fail(out, audit.KindInterrupted, fmt.Errorf("recover: %w", err))
	}
	if !did {
		return x.execute(ctx, m, intent, act)
	}
	out.Kind, out.Result, out.Outcome = audit.KindDone, res, "recovered"
	if err := x.append(out); err != nil {
		return nil, err
	}
	x.done.Add(1)
	x.recovered.Add(1)
	return &doneAction{index: intent.Index, typ: intent.Type, args: intent.Args, state: intent.State, result: res}, nil
}

// rollback undoes one done action (again, if a rollback was in flight)
// and reports whether it succeeded.
func (x *Executor) rollback(ctx context.Context, m *match, as *actionState, d doneAction) (bool, error) {
	if as != nil && as.rbOutcome != nil {
		return as.rbOutcome.Kind == audit.KindRolledBack, nil
	}
	rec := m.record(audit.KindRollback, d.index)
	rec.Type = d.typ
	if as == nil || as.rollback == nil {
		if err := x.append(rec); err != nil {
			return false, err
		}
	}
	x.rollbacks.Add(1)
	out := m.record(audit.KindRollbackFailed, d.index)
	out.Type = d.typ
	start := time.Now()
	var res json.RawMessage
	t, ok := x.reg.Lookup(d.typ)
	var err error
	if !ok {
		err = fmt.Errorf("%q: %w", d.typ, ErrUnknownType)
	} else {
		var act Action
		if act, err = t.New(x.call(m, rec.Key, d.args)); err == nil {
			if once, ok := act.(OnceRollback); ok && once.RollbackOnce() && as != nil && as.rollback != nil {
				err = fmt.Errorf("rollback: %w", ErrInterrupted) // in flight at a crash: never twice
			} else {
				res, err = act.Rollback(ctx, d.state, d.result)
			}
		}
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	out.Result, out.DurationNS = res, time.Since(start).Nanoseconds()
	if err != nil {
		out.Error = err.Error()
		x.log.Warn("action rollback failed", "key", rec.Key, "type", d.typ, "err", err)
	} else {
		out.Kind = audit.KindRolledBack
		x.rollbacksOK.Add(1)
	}
	if err := x.append(out); err != nil {
		return false, err
	}
	return out.Kind == audit.KindRolledBack, nil
}

// OutcomeData is the data of a semprop.action.* event.
type OutcomeData struct {
	Rule    string   `json:"rule"`
	Match   string   `json:"match"` // the match event's ID
	Key     string   `json:"key"`   // the match's key
	Seqs    []uint64 `json:"seqs"`
	Outcome string   `json:"outcome"`
	// FailedIndex is the index of the action that failed (-1 for ok).
	FailedIndex int    `json:"failed_index"`
	Error       string `json:"error,omitempty"`
	AuditSeq    uint64 `json:"audit_seq"` // the audit record of the outcome
}

// publishOutcome publishes the outcome event of a match unless a
// previous run did.
func (x *Executor) publishOutcome(ctx context.Context, m *match, final *audit.Record) error {
	key := m.data.Rule + "/" + m.id
	id := keyID(key + "/outcome")
	if x.published[id] {
		return nil
	}
	// The match's event time, not the wall clock (see emit.event).
	ev := &event.Event{ID: id, Type: "semprop.action." + final.Outcome, Source: x.opts.Source, Subject: m.data.Key, Time: m.ev.Time,
		DataContentType: "application/json", Priority: m.ev.Priority}
	if ev.Subject == "" {
		ev.Subject = m.ev.Subject
	}
	ev.SetAttr(rules.AttrRule, m.data.Rule)
	ev.SetAttr(rules.AttrDepth, strconv.Itoa(m.depth))
	if sev := attr(m.ev, rules.AttrSeverity); sev != "" {
		ev.SetAttr(rules.AttrSeverity, sev)
	}
	ev.SetAttr(AttrActionKey, key)
	ev.Data, _ = json.Marshal(OutcomeData{Rule: m.data.Rule, Match: m.id, Key: m.data.Key, Seqs: m.data.Seqs,
		Outcome: final.Outcome, FailedIndex: final.Index, Error: final.Error, AuditSeq: final.Seq})
	if _, err := x.opts.Publisher.Publish(ctx, ev); err != nil {
		return fmt.Errorf("action: publish %s: %w", ev.Type, err)
	}
	return nil
}
