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

// run forwards events until ctx is done; it returns ctx's error, or an
// error that stops this output (a cursor that cannot be saved, a corrupt
// journal).
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
	size := r.cfg.BatchSize
	buf := make([]event.Event, size)
	batch := make([]*event.Event, 0, size)
	for {
		batch = batch[:0]
		last := r.cursor.Load()
		slot := 0
		// take reads the event in buf[slot] just filled.
		take := func() {
			ev := &buf[slot]
			last = ev.Seq
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
		// The first event: wait for it. Runs of non-matching events
		// advance the cursor too.
		for len(batch) == 0 {
			if err := r.next(ctx, src, &buf[slot]); err != nil {
				return err
			}
			take()
			if len(batch) == 0 && last-r.cursor.Load() >= uint64(size) {
				if err := r.advance(last); err != nil {
					return err
				}
			}
		}
		read := time.Now().UnixNano()
		var waitUntil time.Time
		if r.cfg.BatchWait > 0 {
			waitUntil = time.Now().Add(r.cfg.BatchWait)
		}
		for slot < size {
			ok, err := src.TryNext(&buf[slot])
			if err != nil {
				if errors.Is(err, journal.ErrTruncated) {
					r.gaps.Add(1)
					continue
				}
				return fmt.Errorf("output %s: %w", r.cfg.Name, err)
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
						return ctx.Err()
					}
					if errors.Is(err, context.DeadlineExceeded) {
						break
					}
					return err
				}
			}
			take()
		}
		if err := r.deliver(ctx, batch); err != nil {
			return err
		}
		now := time.Now().UnixNano()
		for range batch {
			r.delay.Observe(now - read)
		}
		if r.onAck != nil {
			r.onAck(batch, read)
		}
		if err := r.advance(last); err != nil {
			return err
		}
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
// refuses for good are dead-lettered, or ctx is done.
func (r *runner) deliver(ctx context.Context, batch []*event.Event) error {
	backoff := r.cfg.Retry.Initial
	attempt := 0
	for len(batch) > 0 {
		attempt++
		err := r.sink.Send(ctx, batch)
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
				if err := r.deliver(ctx, batch[i:i+1]); err != nil {
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
