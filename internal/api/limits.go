package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPLimits bound what clients can make the daemon hold: connections,
// time to send a request, and memory for request bodies. The zero value of
// a field means its default.
type HTTPLimits struct {
	// ReadHeaderTimeout bounds the time to send a request's headers
	// (default 10s).
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds the time to send a request's body (default 60s).
	// It applies only to requests with a body: streams (SSE, WebSocket) and
	// long polls are long-lived responses and are not cut.
	BodyTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle this long (default
	// 120s).
	IdleTimeout time.Duration
	// MaxConns caps the open connections (default 1024); accepting waits
	// while the cap is reached (LimitListener).
	MaxConns int
	// MaxInflightBody bounds the request-body bytes held at once across
	// all requests (default 64 MiB, at least Options.MaxBody). A request
	// reserves its Content-Length before its body is read (a chunked body
	// reserves as it arrives); one that cannot reserve within BodyWait
	// (default 2s) is answered 503 with Retry-After.
	MaxInflightBody int64
	BodyWait        time.Duration
}

// withDefaults fills in the zero fields; maxBody is the per-request bound.
func (l HTTPLimits) withDefaults(maxBody int64) HTTPLimits {
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = 10 * time.Second
	}
	if l.BodyTimeout <= 0 {
		l.BodyTimeout = 60 * time.Second
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 120 * time.Second
	}
	if l.MaxConns <= 0 {
		l.MaxConns = 1024
	}
	if l.MaxInflightBody <= 0 {
		l.MaxInflightBody = 64 << 20
	}
	if l.MaxInflightBody <= maxBody {
		l.MaxInflightBody = maxBody + 1 // a chunked body reserves one byte more
	}
	if l.BodyWait <= 0 {
		l.BodyWait = 2 * time.Second
	}
	return l
}

// maxHeaderBytes bounds a request's headers: room for a binary-mode event
// with every extension attribute at its largest (64 × 4 KiB), half the
// net/http default.
const maxHeaderBytes = 512 << 10

// NewHTTPServer returns the http.Server for the API handler h: headers
// must arrive within l.ReadHeaderTimeout, idle keep-alive connections close
// after l.IdleTimeout, and its error log (failed TLS handshakes, accept
// errors) goes to log, throttled. It sets no ReadTimeout or WriteTimeout:
// those would cut streams; Server bounds body reads itself (BodyTimeout).
// Serve it on LimitListener(ln, l.MaxConns).
func NewHTTPServer(h http.Handler, l HTTPLimits, log *slog.Logger) *http.Server {
	l = l.withDefaults(0)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          NewErrorLog(log),
	}
}

// LimitListener returns a listener that keeps at most max connections
// accepted from ln open at once (max <= 0: the HTTPLimits default).
// Accept waits while max are open, so further clients wait in the
// kernel's backlog and cost the process no file descriptor. Close makes a
// waiting Accept return net.ErrClosed.
func LimitListener(ln net.Listener, max int) net.Listener {
	if max <= 0 {
		max = HTTPLimits{}.withDefaults(0).MaxConns
	}
	return &limitListener{Listener: ln, sem: make(chan struct{}, max), done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	sem       chan struct{}
	closeOnce sync.Once
	done      chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// byteBudget is a counting semaphore of bytes: the request bodies held at
// once. Waiters are served in arrival order so that a large body is not
// starved by small ones. It is safe for concurrent use.
type byteBudget struct {
	size int64
	high atomic.Int64 // the most bytes ever held at once

	mu      sync.Mutex
	used    int64
	waiters []*budgetWaiter // FIFO
}

type budgetWaiter struct {
	n     int64
	ready chan struct{} // closed when the bytes were granted
}

func newByteBudget(size int64) *byteBudget { return &byteBudget{size: size} }

// tryAcquire reserves n bytes if they are free and no one waits for
// bytes; it reports whether it did.
func (b *byteBudget) tryAcquire(n int64) bool {
	if n <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.waiters) == 0 && b.used+n <= b.size {
		b.takeLocked(n)
		return true
	}
	return false
}

// acquire reserves n bytes (n <= size), waiting until ctx ends; it reports
// whether the bytes were reserved.
func (b *byteBudget) acquire(ctx context.Context, n int64) bool {
	if n <= 0 {
		return true
	}
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.size {
		b.takeLocked(n)
		b.mu.Unlock()
		return true
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return true
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready: // granted meanwhile: give it back
		b.used -= n
		b.grantLocked()
		return false
	default:
	}
	for i, x := range b.waiters {
		if x == w {
			b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
			break
		}
	}
	b.grantLocked() // the head may have changed
	return false
}

func (b *byteBudget) takeLocked(n int64) {
	b.used += n
	if b.used > b.high.Load() {
		b.high.Store(b.used)
	}
}

// release returns n bytes.
func (b *byteBudget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.grantLocked()
	b.mu.Unlock()
}

func (b *byteBudget) grantLocked() {
	for len(b.waiters) > 0 && b.used+b.waiters[0].n <= b.size {
		w := b.waiters[0]
		b.waiters = b.waiters[1:]
		b.takeLocked(w.n)
		close(w.ready)
	}
}

// inUse returns the bytes held now.
func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// Errors of guardBody, answered by ServeHTTP.
var (
	errBodyBusy     = errors.New("api: too many request bodies in flight")
	errBodyTooLarge = errors.New("api: request body too large")
)

// bodyChunk is how much a body of unknown length reserves at a time.
const bodyChunk = 64 << 10

// guardBody bounds r's body before a handler reads it: its bytes are
// reserved in the server's byte budget (waiting up to BodyWait), and the
// connection's read deadline is set to BodyTimeout until the body has been
// read. A body of unknown length (chunked) is read here, reserving as it
// arrives. It returns the request to serve and the function that releases
// the reservation once the handler returned.
func (s *Server) guardBody(w http.ResponseWriter, r *http.Request) (*http.Request, func(), error) {
	if r.ContentLength > s.opts.MaxBody {
		return nil, nil, errBodyTooLarge
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.limits.BodyTimeout)) // unsupported in tests with a recorder
	clearDeadline := func() { _ = rc.SetReadDeadline(time.Time{}) }
	if r.ContentLength >= 0 {
		n := r.ContentLength
		if !s.body.tryAcquire(n) {
			ctx, cancel := context.WithTimeout(r.Context(), s.limits.BodyWait)
			ok := s.body.acquire(ctx, n)
			cancel()
			if !ok {
				return nil, nil, errBodyBusy
			}
		}
		// A shallow copy with its own Body: handlers do not change the
		// request, and a deep Clone costs a copy of every header.
		r2 := r.WithContext(r.Context())
		r2.Body = &deadlineBody{ReadCloser: r.Body, done: clearDeadline}
		return r2, func() { s.body.release(n) }, nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.limits.BodyWait)
	defer cancel()
	var held int64
	release := func() { s.body.release(held) }
	var buf bytes.Buffer
	for {
		if int64(buf.Len())+bodyChunk > held {
			n := min(bodyChunk, s.opts.MaxBody+1-held)
			if n <= 0 {
				release()
				return nil, nil, errBodyTooLarge
			}
			if !s.body.acquire(ctx, n) {
				release()
				return nil, nil, errBodyBusy
			}
			held += n
		}
		buf.Grow(int(held) - buf.Len())
		_, err := buf.ReadFrom(io.LimitReader(r.Body, held-int64(buf.Len())))
		if err != nil {
			release()
			return nil, nil, err
		}
		if int64(buf.Len()) > s.opts.MaxBody {
			release()
			return nil, nil, errBodyTooLarge
		}
		if int64(buf.Len()) < held {
			break // EOF before the reservation was used up
		}
	}
	clearDeadline()
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(buf.Bytes()))
	r2.ContentLength = int64(buf.Len())
	return r2, release, nil
}

// deadlineBody clears the connection's read deadline once the body has
// been read to its end: what follows (a long poll, the response) is not
// bounded by BodyTimeout.
type deadlineBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.done)
	}
	return n, err
}
