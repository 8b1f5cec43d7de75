package api

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// throttle limits how often one kind of log line is written: at most burst
// lines per key in each window; the lines beyond are counted and the count
// is attached to the next line of that key that is written. A client that
// makes the server fail the same way thousands of times a second (a full
// disk, failing TLS handshakes) then costs a few lines a minute, not
// megabytes. It is safe for concurrent use.
type throttle struct {
	window time.Duration
	burst  int
	now    func() time.Time

	mu   sync.Mutex
	keys map[string]*throttleKey
}

type throttleKey struct {
	start      time.Time // of the current window
	n          int       // lines written in it
	suppressed int       // lines dropped since the last written one
}

// maxThrottleKeys bounds the memory of a throttle: past it, the keys of
// finished windows are forgotten (and, if every key is busy, all of them).
const maxThrottleKeys = 1024

func newThrottle(window time.Duration, burst int) *throttle {
	return &throttle{window: window, burst: burst, now: time.Now, keys: make(map[string]*throttleKey)}
}

// allow reports whether a line of key may be written now and, if so, how
// many lines of that key were suppressed before it.
func (t *throttle) allow(key string) (ok bool, suppressed int) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	k := t.keys[key]
	if k == nil {
		if len(t.keys) >= maxThrottleKeys {
			t.forgetLocked(now)
		}
		k = &throttleKey{start: now}
		t.keys[key] = k
	}
	if now.Sub(k.start) >= t.window {
		k.start, k.n = now, 0
	}
	if k.n >= t.burst {
		k.suppressed++
		return false, 0
	}
	k.n++
	suppressed, k.suppressed = k.suppressed, 0
	return true, suppressed
}

func (t *throttle) forgetLocked(now time.Time) {
	for key, k := range t.keys {
		if now.Sub(k.start) >= t.window {
			delete(t.keys, key)
		}
	}
	if len(t.keys) >= maxThrottleKeys {
		clear(t.keys)
	}
}

// throttledHandler is a slog.Handler that drops repeated identical records
// (same level, message and attributes) beyond its throttle; a record
// written after some were dropped carries "suppressed"=N.
type throttledHandler struct {
	next   slog.Handler
	t      *throttle
	prefix string // the attributes and groups added by WithAttrs/WithGroup
}

var _ slog.Handler = (*throttledHandler)(nil)

func (h *throttledHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *throttledHandler) Handle(ctx context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(h.prefix)
	b.WriteString(r.Level.String())
	b.WriteByte(' ')
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteByte(' ')
		b.WriteString(a.String())
		return true
	})
	ok, suppressed := h.t.allow(b.String())
	if !ok {
		return nil
	}
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return h.next.Handle(ctx, r)
}

func (h *throttledHandler) WithAttrs(as []slog.Attr) slog.Handler {
	p := h.prefix
	for _, a := range as {
		p += a.String() + " "
	}
	return &throttledHandler{next: h.next.WithAttrs(as), t: h.t, prefix: p}
}

func (h *throttledHandler) WithGroup(name string) slog.Handler {
	return &throttledHandler{next: h.next.WithGroup(name), t: h.t, prefix: h.prefix + name + "."}
}

// throttledLogger returns l with repeated identical records throttled to a
// few per minute.
func throttledLogger(l *slog.Logger) *slog.Logger {
	return slog.New(&throttledHandler{next: l.Handler(), t: newThrottle(time.Minute, 5)})
}

// errorLogWriter turns the lines of net/http's error log (failed TLS
// handshakes, accept errors, panics in handlers) into throttled slog
// warnings. Lines that differ only in the peer's address share a key, so
// a flood of failing handshakes from many ports is a few lines a minute.
type errorLogWriter struct {
	log *slog.Logger
	t   *throttle
}

func (w *errorLogWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	ok, suppressed := w.t.allow(errorLogKey(line))
	if !ok {
		return len(p), nil
	}
	if suppressed > 0 {
		w.log.Warn(line, "suppressed", suppressed)
	} else {
		w.log.Warn(line)
	}
	return len(p), nil
}

// errorLogKey is line without the peer address that net/http writes after
// " from " ("http: TLS handshake error from 10.0.0.1:5000: EOF").
func errorLogKey(line string) string {
	before, after, ok := strings.Cut(line, " from ")
	if !ok {
		return line
	}
	if _, rest, ok := strings.Cut(after, ": "); ok {
		return before + " from *: " + rest
	}
	return before + " from *"
}

// NewErrorLog returns a *log.Logger for http.Server.ErrorLog that writes
// to l as warnings, at most a few lines a minute of each kind (lines that
// differ only in the peer's address are one kind). Safe for concurrent use.
func NewErrorLog(l *slog.Logger) *log.Logger {
	return log.New(&errorLogWriter{log: l, t: newThrottle(time.Minute, 5)}, "", 0)
}
