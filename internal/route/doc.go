// Package route decides where an event goes. A Router holds routes — a
// Selector (type pattern, path glob, filter expression) plus optional
// security filters and redaction, and one or more targets with a delivery
// strategy — and compiles them into an immutable Table: a trie of dotted
// type patterns (NATS semantics, "*" one token, ">" the rest) whose
// candidates are then checked against their path globs and filters, with a
// bounded cache of trie results keyed by event type (never by path).
//
// Every change of the routes (Add, Remove) builds a new Table and swaps it in atomically: publishers never block on
// reconfiguration and no event is routed by a half-updated table. Routing
// an event through a cached type allocates nothing.
//
// Targets are the caller's: any comparable value (a subscription pointer,
// an id). A route delivers to all its targets (Broadcast), or to one member
// of a group chosen round-robin, by weight, or by a hash of the subject (so
// all events of one file reach one member, in order), or to the first
// healthy target of an ordered list (Failover). Each target may have a
// circuit breaker (sony/gobreaker): a target whose breaker is open is
// skipped at once, and the event goes to the next member. Lanes is the
// bounded priority queue a target can use so that critical events never
// wait behind bulk ones and bulk is shed first.
//
// Router, Table and Lanes are safe for concurrent use.
package route

import "errors"

// Errors returned by this package; errors wrap one of them.
var (
	ErrEmptyPattern = errors.New("route: empty type pattern")
	ErrBadPattern   = errors.New("route: malformed type pattern")
	ErrBadSelector  = errors.New("route: invalid selector")
	ErrBadRoute     = errors.New("route: invalid route")
	ErrConflict     = errors.New("route: route name already in use")
	ErrClosed       = errors.New("route: lanes closed")
)
