// Package action runs the actions that rules attach to their matches
// (snapshot a file, call a webhook, run a program, quarantine a file, tag
// it, signal a process, put a process on the FUSE mounts' guard list,
// emit an event) as a transaction-like sequence,
// with a tamper-evident record of everything in the audit trail (package
// audit).
//
// An Executor reads semprop.rule.match events from the durable stream at
// a persisted cursor. For each match it runs the rule's actions in order;
// when one fails, the ones already done are rolled back in reverse. The
// outcome is published as semprop.action.ok, semprop.action.failed or
// semprop.action.rolledback.
//
// # Exactly once
//
// Every action execution has an idempotency key, rule/match/index. Before
// an action runs, an intent record (its rendered arguments, its checked
// preconditions and the state it prepared) is appended to the audit log
// and fsynced; after it, an outcome record. After a crash the executor
// reads the log back: an action with an outcome is not run again; an
// action with an intent and no outcome was in flight, and is asked
// whether it took effect (Recoverer): if it did it is recorded done, if
// it did not it runs, and an action that cannot tell (exec) is recorded
// interrupted and handled as a failure, so it is never run twice.
// Rollbacks are idempotent and are simply run again when one was in
// flight. Outcome events have IDs derived from the key and are not
// published twice (the executor looks for them in the journal after its
// cursor when it starts).
//
// # Path safety
//
// Actions that touch files resolve every path beneath the configured
// roots with openat2(RESOLVE_BENEATH): a path with a .. element, or one
// that a symbolic link would take outside a root, is refused.
package action

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/semprop/semprop/internal/audit"
)

// Errors.
var (
	ErrUnknownType  = errors.New("action: unknown action type")
	ErrArgs         = errors.New("action: invalid arguments")
	ErrPrecondition = errors.New("action: precondition failed")
	ErrOutsideRoots = errors.New("action: path outside the configured roots")
	ErrDisabled     = errors.New("action: action type disabled in the configuration")
	ErrInterrupted  = errors.New("action: interrupted by a crash; it may or may not have run")
)

// Action is one action of one match, built from its rendered arguments.
// The executor calls Validate, then Execute, then perhaps Rollback, from
// one goroutine.
type Action interface {
	// Validate checks the preconditions against the current state of the
	// files and processes involved. It returns the checks made (recorded
	// in the audit trail) and the state to keep for Execute, recovery and
	// Rollback; a failed check is an error wrapping ErrPrecondition.
	Validate(ctx context.Context) (checks []audit.Check, state json.RawMessage, err error)
	// Execute performs the action, with its own retries if it has any,
	// and returns what it did.
	Execute(ctx context.Context, state json.RawMessage) (result json.RawMessage, err error)
	// Rollback undoes what Execute did, given Execute's result. It is
	// idempotent: after a crash it may be called again. An action whose
	// effect cannot be undone returns a result that says so and nil.
	Rollback(ctx context.Context, state, result json.RawMessage) (json.RawMessage, error)
}

// Recoverer is implemented by actions that can tell, after a crash in
// the middle of Execute, whether it took effect. done with a result: it
// did; !done: it did not (the executor runs it). Actions without it are
// recorded interrupted and never run again.
type Recoverer interface {
	Recover(ctx context.Context, state json.RawMessage) (result json.RawMessage, done bool, err error)
}

// OnceRollback is implemented by actions whose Rollback must not run
// twice (exec's rollback program): a rollback in flight at a crash is
// then recorded failed (interrupted) instead of being run again.
type OnceRollback interface {
	RollbackOnce() bool
}

// Args are an action's rendered arguments: each a string or a []string.
type Args map[string]any

// Str returns argument name as a string ("" if absent); a list is
// joined with spaces.
func (a Args) Str(name string) string {
	switch v := a[name].(type) {
	case string:
		return v
	case []string:
		return strings.Join(v, " ")
	case []any:
		var ss []string
		for _, x := range v {
			ss = append(ss, fmt.Sprint(x))
		}
		return strings.Join(ss, " ")
	}
	return ""
}

// List returns argument name as a list: a list as it is, a string split
// at white space.
func (a Args) List(name string) []string {
	switch v := a[name].(type) {
	case string:
		return strings.Fields(v)
	case []string:
		return v
	case []any:
		var ss []string
		for _, x := range v {
			ss = append(ss, fmt.Sprint(x))
		}
		return ss
	}
	return nil
}

// Duration returns argument name as a duration, or def if absent.
func (a Args) Duration(name string, def time.Duration) (time.Duration, error) {
	s := a.Str(name)
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s: %q: want a duration such as 2s: %w", name, s, ErrArgs)
	}
	return d, nil
}

// Int returns argument name as a non-negative integer, or def if absent.
func (a Args) Int(name string, def int) (int, error) {
	s := a.Str(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: %q: want a non-negative integer: %w", name, s, ErrArgs)
	}
	return n, nil
}

// ArgKind is what an argument holds, for checking rule files.
type ArgKind int

// Argument kinds.
const (
	ArgString ArgKind = iota
	ArgList
	ArgDuration
	ArgInt
)

// Type is one registered action type.
type Type struct {
	// New builds an action from a call. Required.
	New func(c *Call) (Action, error)
	// Args lists the arguments the type takes; Required those it needs.
	Args     map[string]ArgKind
	Required []string
}

// Registry maps action type names to types. It is safe for concurrent
// reads once built; Register is not safe to call concurrently with use.
type Registry struct {
	types map[string]Type
}

// NewRegistry returns a registry holding the built-in types.
func NewRegistry() *Registry {
	r := &Registry{types: map[string]Type{}}
	registerBuiltins(r)
	return r
}

// Register adds or replaces a type.
func (r *Registry) Register(name string, t Type) { r.types[name] = t }

// Lookup returns the type called name.
func (r *Registry) Lookup(name string) (Type, bool) {
	t, ok := r.types[name]
	return t, ok
}

// Names returns the registered type names, sorted.
func (r *Registry) Names() []string { return slices.Sorted(maps.Keys(r.types)) }

// Call is what an action is built from: its arguments, rendered, and the
// match it runs for.
type Call struct {
	Env   *Env
	Args  Args
	Key   string // idempotency key: rule/match/index
	Rule  string
	Match *MatchView
	Depth int // the match's depth (see rules.AttrDepth)
}
