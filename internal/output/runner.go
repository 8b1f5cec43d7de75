package output

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/atomicfile"
	"github.com/semprop/semprop/internal/filter"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/metrics"
)

// sink sends batches to one target. Send returns nil once the target has
// acknowledged every event of evs; an error wrapping ErrRejected means the
// target refused them for good, a *RetryAfterError that the target asked
// for a pause. Send and Close are called from one goroutine.
type sink interface {
	Send(ctx context.Context, evs []*event.Event) error
	Close() error
}

// pipeliner is a sink that keeps several batches in flight. Start hands
// evs to the target and returns without waiting for its
// acknowledgements; the wait it returns blocks until the target
// acknowledged every event of evs (nil), or the batch failed: an error
// wrapped in a *partialError counts the batch's first events that were
// acknowledged. A failure fails every batch still in flight (their waits
// return at once). Start, the waits, Send and Close are called from one
// goroutine, the waits in Start order, and Send only with nothing in
// flight.
type pipeliner interface {
	sink
	Start(ctx context.Context, evs []*event.Event) (wait func(ctx context.Context) error)
}

// RetryAfterError is a send error with the pause the target asked for
// (a webhook's Retry-After).
type RetryAfterError struct {
	After time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// source is the durable stream an output reads: a *propagate.Reader.
type source interface {
	Next(ctx context.Context, ev *event.Event) error
	TryNext(ev *event.Event) (bool, error)
	Close() error
}

// Output states, in Info.State.
const (
	StateStarting = "starting"
	StateOK       = "ok"
	StateRetrying = "retrying"
	StateStopped  = "stopped"
)

// Info describes an output: where it is and what it did. The counters are
// persisted with the cursor and survive a restart (up to the last save).
type Info struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	State string `json:"state"`
	// Cursor is the last seq the output is done with (acknowledged by the
	// target, dead-lettered or not matching); Head the journal's durable
	// seq; Lag = Head - Cursor.
	Cursor       uint64    `json:"cursor"`
	Head         uint64    `json:"head"`
	Lag          uint64    `json:"lag"`
	Sent         uint64    `json:"sent"`    // events the target acknowledged
	Batches      uint64    `json:"batches"` // batches the target acknowledged
	Retries      uint64    `json:"retries"` // failed attempts
	DeadLettered uint64    `json:"dead_lettered"`
	Skipped      uint64    `json:"skipped"` // not matching the selector
	Gaps         uint64    `json:"gaps"`    // lost to retention before the output read them
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
	// DelayP50 and DelayP99 are the time from the event being read
	// (durable) to the target's acknowledgement (bucket upper bounds).
	DelayP50 time.Duration `json:"delay_p50_ns"`
	DelayP99 time.Duration `json:"delay_p99_ns"`
	// Publish is how a NATS output publishes on its current connection:
	// "fast_batch" or "per_message" (empty before it connects, and for
	// the other types).
	Publish string `json:"publish,omitempty"`
}

// publishModer is a sink that tells how it publishes (Info.Publish).
type publishModer interface {
	publishMode() string
}

type counters struct {
	Sent         uint64 `json:"sent,omitempty"`
	Batches      uint64 `json:"batches,omitempty"`
	Retries      uint64 `json:"retries,omitempty"`
	DeadLettered uint64 `json:"dead_lettered,omitempty"`
	Skipped      uint64 `json:"skipped,omitempty"`
	Gaps         uint64 `json:"gaps,omitempty"`
}

type cursorFile struct {
	Seq      uint64   `json:"seq"`
	Type     string   `json:"type"`
	Counters counters `json:"counters"`
}

// runner runs one output. Its counters are read from any goroutine.
type runner struct {
	cfg    Config
	dir    string // DIR/NAME
	open   func(from uint64) (source, error)
	head   func() uint64
	first  func() uint64 // the journal's first retained seq
	sink   sink
	match  anyOf
	redact *filter.Redactor
	log    *slog.Logger
	every  time.Duration // cursor persistence interval
	onAck  func(evs []*event.Event, read int64)

	cursor                                   atomic.Uint64
	sent, batches, retries, dead, skip, gaps atomic.Uint64
	state                                    atomic.Pointer[string]
	delay                                    metrics.Histogram // read → acknowledged

	errMu   sync.Mutex // guards the fields below
	lastErr string
	errAt   time.Time
	logAt   time.Time // last failure logged (at most one line a second)

	saveMu sync.Mutex // serializes saves
	saved  time.Time
}

func (r *runner) setState(s string) { r.state.Store(&s) }

func (r *runner) info() Info {
	info := Info{Name: r.cfg.Name, Type: r.cfg.Type, State: *r.state.Load(), Cursor: r.cursor.Load(), Head: r.head(),
		Sent: r.sent.Load(), Batches: r.batches.Load(), Retries: r.retries.Load(), DeadLettered: r.dead.Load(),
		Skipped: r.skip.Load(), Gaps: r.gaps.Load(), DelayP50: r.delay.Quantile(0.5), DelayP99: r.delay.Quantile(0.99)}
	if info.Head > info.Cursor {
		info.Lag = info.Head - info.Cursor
	}
	if m, ok := r.sink.(publishModer); ok {
		info.Publish = m.publishMode()
	}
	r.errMu.Lock()
	info.LastError, info.LastErrorAt = r.lastErr, r.errAt
	r.errMu.Unlock()
	return info
}

func (r *runner) cursorPath() string { return filepath.Join(r.dir, "cursor.json") }

// load restores the cursor, or places a new output's cursor per Start.
func (r *runner) load() error {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return fmt.Errorf("output %s: %w", r.cfg.Name, err)
	}
	b, err := os.ReadFile(r.cursorPath())
	switch {
	case err == nil:
		var cf cursorFile
		if err := json.Unmarshal(b, &cf); err != nil {
			return fmt.Errorf("output %s: cursor %s: %w", r.cfg.Name, r.cursorPath(), err)
		}
		r.cursor.Store(cf.Seq)
		c := cf.Counters
		r.sent.Store(c.Sent)
		r.batches.Store(c.Batches)
		r.retries.Store(c.Retries)
		r.dead.Store(c.DeadLettered)
		r.skip.Store(c.Skipped)
		r.gaps.Store(c.Gaps)
		return nil
	case errors.Is(err, os.ErrNotExist):
		if r.cfg.Start == "all" {
			r.cursor.Store(max(r.first(), 1) - 1)
		} else {
			r.cursor.Store(r.head())
		}
		return r.save()
	default:
		return fmt.Errorf("output %s: %w", r.cfg.Name, err)
	}
}

func (r *runner) save() error {
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	cf := cursorFile{Seq: r.cursor.Load(), Type: r.cfg.Type, Counters: counters{Sent: r.sent.Load(), Batches: r.batches.Load(),
		Retries: r.retries.Load(), DeadLettered: r.dead.Load(), Skipped: r.skip.Load(), Gaps: r.gaps.Load()}}
	b, _ := json.Marshal(cf)
	if err := atomicfile.Write(r.cursorPath(), b, 0o644); err != nil {
		return fmt.Errorf("output %s: save cursor: %w", r.cfg.Name, err)
	}
	r.saved = time.Now()
	return nil
}

// advance moves the cursor to seq and persists it when the last save is
// older than the interval.
func (r *runner) advance(seq uint64) error {
	r.cursor.Store(seq)
	if time.Since(r.saved) < r.every {
		return nil
	}
	return r.save()
}

// flight is a batch sent through a pipeliner, not yet acknowledged.
type flight struct {
	batch []*event.Event
	buf   []event.Event // the events batch points into
	last  uint64        // the cursor once the batch is acknowledged
	read  int64         // when its first event was read (UnixNano)
	wait  func(ctx context.Context) error
}

// run forwards events until ctx is done; it returns ctx's error, or an
// error that stops this output (a cursor that cannot be saved, a corrupt
// journal).
//
// A sink that is a pipeliner gets up to InFlight batches at once: the
// next batch is read and sent while the acks of the earlier ones are
// still on their way. The cursor advances over a batch only once it and
// every batch before it are acknowledged.
func (r *runner) run(ctx context.Context) (err error) {
	r.setState(StateOK)
	defer func() {
		r.setState(StateStopped)
		err = errors.Join(err, r.save(), r.sink.Close())
	}()
	src, err := r.open(r.cursor.Load() + 1)
	if err != nil {
		return fmt.Errorf("output %s: %w", r.cfg.Name, err)
	}
	defer src.Close()
	p, _ := r.sink.(pipeliner)
	window := r.cfg.InFlight
	if p == nil {
		window = 1
	}
	var (
		flights []flight        // in Start order
		free    [][]event.Event // buffers of landed batches
		last    = r.cursor.Load()
	)
	for {
		if len(flights) == window {
			if err := r.land(ctx, &flights, &free); err != nil {
				return err
			}
			continue
		}
		var buf []event.Event
		if n := len(free); n > 0 {
			buf, free = free[n-1], free[:n-1]
		} else {
			buf = make([]event.Event, r.cfg.BatchSize)
		}
		batch, read, err := r.fill(ctx, src, buf, &last, len(flights) == 0)
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			// Nothing to read now, batches in flight: take the oldest's
			// acks.
			free = append(free, buf)
			if err := r.land(ctx, &flights, &free); err != nil {
				return err
			}
			continue
		}
		if p == nil {
			if err := r.deliver(ctx, batch, nil); err != nil {
				return err
			}
			r.acked(batch, read)
			free = append(free, buf)
			if err := r.advance(last); err != nil {
				return err
			}
			continue
		}
		flights = append(flights, flight{batch: batch, buf: buf, last: last, read: read, wait: p.Start(ctx, batch)})
	}
}

// fill reads the next batch into buf. With block, it waits for the first
// matching event (runs of non-matching events advance the cursor); without,
// it returns an empty batch when no event is ready. *last is the seq of
// the last event read, matching or not.
func (r *runner) fill(ctx context.Context, src source, buf []event.Event, last *uint64, block bool) (batch []*event.Event, read int64, err error) {
	size := len(buf)
	batch = make([]*event.Event, 0, size)
	slot := 0
	// take reads the event in buf[slot] just filled.
	take := func() {
		ev := &buf[slot]
		*last = ev.Seq
		if !r.match.Match(ev) {
			r.skip.Add(1)
			return
		}
		if r.redact != nil {
			ev = r.redact.Apply(ev)
		}
		batch = append(batch, ev)
		slot++
	}
	// The first event: wait for it when blocking.
	for len(batch) == 0 {
		if block {
			if err := r.next(ctx, src, &buf[slot]); err != nil {
				return nil, 0, err
			}
		} else {
			ok, err := r.tryNext(src, &buf[slot])
			if err != nil {
				return nil, 0, err
			}
			if !ok {
				return batch, 0, nil
			}
		}
		take()
		if block && len(batch) == 0 && *last-r.cursor.Load() >= uint64(size) {
			if err := r.advance(*last); err != nil {
				return nil, 0, err
			}
		}
	}
	read = time.Now().UnixNano()
	var waitUntil time.Time
	if r.cfg.BatchWait > 0 {
		waitUntil = time.Now().Add(r.cfg.BatchWait)
	}
	for slot < size {
		ok, err := r.tryNext(src, &buf[slot])
		if err != nil {
			return nil, 0, err
		}
		if !ok {
			wait := time.Until(waitUntil)
			if wait <= 0 {
				break
			}
			wctx, cancel := context.WithTimeout(ctx, wait)
			err := r.next(wctx, src, &buf[slot])
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return nil, 0, ctx.Err()
				}
				if errors.Is(err, context.DeadlineExceeded) {
					break
				}
				return nil, 0, err
			}
		}
		take()
	}
	return batch, read, nil
}

// tryNext reads the next event if one is ready, counting what retention
// took.
func (r *runner) tryNext(src source, ev *event.Event) (bool, error) {
	for {
		ok, err := src.TryNext(ev)
		if err != nil {
			if errors.Is(err, journal.ErrTruncated) {
				r.gaps.Add(1)
				continue
			}
			return false, fmt.Errorf("output %s: %w", r.cfg.Name, err)
		}
		return ok, nil
	}
}

// land waits for the oldest batch in flight. When it failed, the sink
// dropped every batch in flight: each is then delivered again, in order,
// from its first unacknowledged event, before anything newer is sent.
func (r *runner) land(ctx context.Context, flights *[]flight, free *[][]event.Event) error {
	fs := *flights
	err := fs[0].wait(ctx)
	if err == nil {
		f := fs[0]
		r.sent.Add(uint64(len(f.batch)))
		r.batches.Add(1)
		r.acked(f.batch, f.read)
		*free = append(*free, f.buf)
		*flights = append(fs[:0], fs[1:]...)
		return r.advance(f.last)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for i, f := range fs {
		if i > 0 {
			// Batches sent after the failed one: what the target
			// acknowledged of them before the failure stands.
			err = f.wait(ctx)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				if pe, ok := errors.AsType[*partialError](err); ok {
					err = &partialError{done: pe.done, err: errInFlight}
				} else {
					err = errInFlight
				}
			}
		}
		if err == nil {
			r.sent.Add(uint64(len(f.batch)))
			r.batches.Add(1)
		} else if err := r.deliver(ctx, f.batch, err); err != nil {
			return err
		}
		r.acked(f.batch, f.read)
		*free = append(*free, f.buf)
		if err := r.advance(f.last); err != nil {
			return err
		}
	}
	*flights = fs[:0]
	return nil
}

// errInFlight marks a batch that was in flight behind a failed one: it is
// sent again at once, without counting a failed attempt.
var errInFlight = errors.New("output: in flight behind a failed batch")

// acked records an acknowledged batch: its delay and the test hook.
func (r *runner) acked(batch []*event.Event, read int64) {
	now := time.Now().UnixNano()
	for range batch {
		r.delay.Observe(now - read)
	}
	if r.onAck != nil {
		r.onAck(batch, read)
	}
}

// next reads the next event, counting what retention took.
func (r *runner) next(ctx context.Context, src source, ev *event.Event) error {
	for {
		err := src.Next(ctx, ev)
		if err == nil {
			return nil
		}
		if errors.Is(err, journal.ErrTruncated) {
			r.gaps.Add(1)
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("output %s: %w", r.cfg.Name, err)
	}
}

// partialError is a send error after the target acknowledged the first
// done events of the batch (a webhook in binary mode, one request per
// event): those are not sent again, and a refusal names the next one.
type partialError struct {
	done int
	err  error
}

func (e *partialError) Error() string { return e.err.Error() }
func (e *partialError) Unwrap() error { return e.err }

// deliver sends batch until the target acknowledges it, the events it
// refuses for good are dead-lettered, or ctx is done. prior, when not
// nil, is the outcome of the attempt a pipelined send made.
func (r *runner) deliver(ctx context.Context, batch []*event.Event, prior error) error {
	backoff := r.cfg.Retry.Initial
	attempt := 0
	for len(batch) > 0 {
		var err error
		if prior != nil {
			err, prior = prior, nil
		} else {
			err = r.sink.Send(ctx, batch)
		}
		if errors.Is(err, errInFlight) {
			// Not an attempt of its own: send what was not acked.
			if pe, ok := errors.AsType[*partialError](err); ok {
				r.sent.Add(uint64(pe.done))
				batch = batch[pe.done:]
			}
			continue
		}
		attempt++
		if err == nil {
			r.sent.Add(uint64(len(batch)))
			r.batches.Add(1)
			if attempt > 1 {
				r.setState(StateOK)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.failed(err)
		known := false // whether batch[0] is the event at fault
		if pe, ok := errors.AsType[*partialError](err); ok {
			r.sent.Add(uint64(pe.done))
			batch, known = batch[pe.done:], true
		}
		if errors.Is(err, ErrRejected) {
			if known || len(batch) == 1 {
				if err := r.deadLetter(batch[:1], err); err != nil {
					return err
				}
				batch, attempt = batch[1:], 0
				continue
			}
			// Find the ones it refuses: one at a time, in order.
			for i := range batch {
				if err := r.deliver(ctx, batch[i:i+1], nil); err != nil {
					return err
				}
			}
			return nil
		}
		r.retries.Add(1)
		if r.cfg.Retry.Attempts > 0 && attempt >= r.cfg.Retry.Attempts {
			return r.deadLetter(batch, err)
		}
		r.setState(StateRetrying)
		pause := backoff/2 + rand.N(backoff/2+1)
		if ra, ok := errors.AsType[*RetryAfterError](err); ok && ra.After > pause {
			pause = min(ra.After, 5*r.cfg.Retry.Max)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		backoff = min(2*backoff, r.cfg.Retry.Max)
	}
	return nil
}

func (r *runner) failed(err error) {
	now := time.Now()
	r.errMu.Lock()
	r.lastErr, r.errAt = err.Error(), now
	logIt := now.Sub(r.logAt) >= time.Second
	if logIt {
		r.logAt = now
	}
	r.errMu.Unlock()
	if logIt {
		r.log.Warn("output: send failed; retrying", "output", r.cfg.Name, "type", r.cfg.Type, "err", err)
	}
}

// deadLetter appends evs to the output's dead letter file (NDJSON: time,
// error, event) and fsyncs it.
func (r *runner) deadLetter(evs []*event.Event, cause error) error {
	f, err := os.OpenFile(filepath.Join(r.dir, "deadletter.ndjson"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("output %s: dead letter: %w", r.cfg.Name, err)
	}
	var b []byte
	msg, _ := json.Marshal(cause.Error())
	for _, ev := range evs {
		b = append(b, `{"time":"`...)
		b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","error":`...)
		b = append(b, msg...)
		b = append(b, `,"event":`...)
		b = ev.AppendJSON(b)
		b = append(b, "}\n"...)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close())
	if err != nil {
		return fmt.Errorf("output %s: dead letter: %w", r.cfg.Name, err)
	}
	r.dead.Add(uint64(len(evs)))
	r.log.Error("output: events dead-lettered", "output", r.cfg.Name, "events", len(evs), "err", cause)
	return nil
}
