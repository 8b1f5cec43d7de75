// Package cep matches complex event patterns over a stream of events: one
// automaton per pattern and partition key, on event time.
//
// # Kinds
//
//   - single: every event the condition accepts.
//   - count: Count accepted events with one key whose times lie within
//     Within of the last one (the window is inclusive: t_last - t_i <=
//     Within); with Distinct, Count distinct values, the match listing the
//     latest event of each value.
//   - sequence: steps in order with relaxed contiguity (unaccepted events
//     may come between). Every event the first step accepts starts a
//     partial match; each partial match takes, for its next step, the
//     next event of its key that step accepts (later steps see the events
//     bound so far); it dies when an event of its key is more than Within
//     after its first event. When partial matches complete on the same
//     event, the oldest is the match.
//   - not_followed_by: an accepted trigger at t matches at t+Within unless
//     an event of its key accepted by Not (which sees the trigger as
//     bound[0]) comes after it with time <= t+Within.
//   - absent: for each key, fires at the deadline Within after the last
//     accepted event when no further one came in time (a gap strictly
//     longer than Within), then waits for the next accepted event. Without
//     a key, the pattern is armed at the first event the engine sees.
//
// # Time
//
// Events carry their own time. The watermark is the newest event time
// seen minus Options.Lateness (never below what AdvanceTo or Flush set).
// An event older than the watermark when it arrives is dropped and counted
// as late; the others wait until the watermark reaches them and are then
// matched in (time, seq) order, so the outcome does not depend on the
// order in which they arrived. A timer due at D (not_followed_by, absent)
// fires once the watermark passes D, after every event at D and before any
// later one; the match's time is D. Flush (the end of a recorded stream)
// matches every buffered event and fires the timers due before the newest
// event time, not later ones.
//
// # After a match
//
// Skip past the last event: after a match, every partial match of the
// same pattern and key that started at or before its last event is
// dropped (count: the window is emptied), so no event is in two matches
// of one pattern and key. A Cooldown then suppresses a match of a key
// less than Cooldown after that key's last emitted match; a rate limit
// (MaxRate per RatePeriod) drops further matches of the pattern in a
// window of event time, announcing it once with a Throttled match.
// Suppressed and throttled matches are counted.
//
// # Limits
//
// Each pattern keeps at most Limits.MaxKeys keys (a new key evicts the
// least recently active one) and Limits.MaxPartials partial matches,
// pending triggers or window events per key (a new one evicts the
// oldest). Keys idle for longer than their window and cooldown are purged.
// Every eviction is counted in Counters; nothing is dropped silently.
//
// # Dispatch
//
// Patterns declare the event types their conditions can accept; an event
// of a type no pattern wants costs one map lookup and a comparison with
// the next timer, whatever the number of patterns.
//
// An Engine is not safe for concurrent use. Its whole state can be
// serialized with Snapshot and restored with Restore, and its patterns
// swapped with Replace, keeping the state of unchanged ones.
package cep
