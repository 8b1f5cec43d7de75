// Package api is semprop's HTTP API (v1): CloudEvents ingest, replay from the
// journal as NDJSON, Server-Sent Events streams and health. Everything it
// sends out of the process is durable: replay and streams read the journal
// up to its durable seq, and ingest answers only once the events are durable.
//
// Errors are JSON {"error": "...", "field": "..."} with the status codes of
// DESIGN.md (400 malformed, 413 too large, 415 media type, 503 not ready).
package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/auth"
	"github.com/semprop/semprop/internal/propagate"
)

// Options configure a Server.
type Options struct {
	Manager *propagate.Manager
	Logger  *slog.Logger
	// MaxBody bounds a request body (default 16 MiB); MaxBatch the events in
	// one batch (default 10,000); Limits the parts of one event.
	MaxBody  int64
	MaxBatch int
	Limits   event.Limits
	// Heartbeat is the interval of SSE keep-alive comments (default 15s).
	Heartbeat time.Duration
	// Registerer receives the HTTP request metrics; nil registers none.
	Registerer prometheus.Registerer
	// Auth authenticates requests; nil (or no tokens) allows everything.
	Auth *auth.Authenticator
}

// Server serves the HTTP API. It is safe for concurrent use.
type Server struct {
	m    *propagate.Manager
	log  *slog.Logger
	opts Options
	mux  *http.ServeMux

	ready    atomic.Bool
	notReady atomic.Pointer[string]

	routesMu sync.Mutex
	routes   []string

	cons    consumers
	metrics *httpMetrics

	closeOnce sync.Once
	done      chan struct{} // closed by Close: streams end
}

// New returns a Server; it is not ready (see SetReady) until told so.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = 16 << 20
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 10000
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Second
	}
	s := &Server{m: opts.Manager, log: opts.Logger, opts: opts, mux: http.NewServeMux(), done: make(chan struct{}), cons: consumers{open: make(map[string]*propagate.Consumer)}}
	s.metrics = newHTTPMetrics(opts.Registerer)
	reason := "starting"
	s.notReady.Store(&reason)
	for pattern, h := range map[string]http.HandlerFunc{
		"POST /v1/events":                     s.ingest,
		"GET /v1/events":                      s.replay,
		"GET /v1/stream":                      s.stream,
		"GET /v1/ws":                          s.ws,
		"POST /v1/subscriptions":              s.createConsumer,
		"GET /v1/subscriptions":               s.listConsumers,
		"DELETE /v1/subscriptions/{name}":     s.deleteConsumer,
		"POST /v1/subscriptions/{name}/fetch": s.fetch,
		"POST /v1/subscriptions/{name}/ack":   s.ack,
		"GET /v1/routes":                      s.listRoutes,
		"POST /v1/routes":                     s.addRoutes,
		"DELETE /v1/routes/{name}":            s.deleteRoute,
		"GET /v1/openapi.json":                serveOpenAPI,
		"GET /healthz":                        s.healthz,
		"GET /readyz":                         s.readyz,
	} {
		s.Handle(pattern, h)
	}
	return s
}

// Handle registers an extra handler (metrics, cluster, …) on the server's
// mux. With tokens configured it requires the admin scope.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.routesMu.Lock()
	s.routes = append(s.routes, pattern)
	s.routesMu.Unlock()
	s.mux.Handle(pattern, h)
}

// Routes lists the patterns registered on the server, for the OpenAPI test.
func (s *Server) Routes() []string {
	s.routesMu.Lock()
	defer s.routesMu.Unlock()
	return slices.Clone(s.routes)
}

//go:embed openapi.json
var openapi []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openapi)
}

// needs is what each route requires of a caller when tokens are
// configured; routes not listed (those added with Handle) need admin.
var needs = map[string]need{
	"GET /healthz":                        needNothing,
	"GET /readyz":                         needNothing,
	"GET /v1/openapi.json":                needNothing,
	"POST /v1/events":                     needPublish,
	"GET /v1/events":                      needSubscribe,
	"GET /v1/stream":                      needSubscribe,
	"GET /v1/ws":                          needSubscribe,
	"POST /v1/subscriptions":              needSubscribe,
	"GET /v1/subscriptions":               needSubscribe,
	"DELETE /v1/subscriptions/{name}":     needSubscribe,
	"POST /v1/subscriptions/{name}/fetch": needSubscribe,
	"POST /v1/subscriptions/{name}/ack":   needSubscribe,
	"GET /v1/routes":                      needAdmin,
	"POST /v1/routes":                     needAdmin,
	"DELETE /v1/routes/{name}":            needAdmin,
}

type need uint8

const (
	needAdmin need = iota
	needNothing
	needPublish
	needSubscribe
)

type principalKey struct{}

// principal returns the caller of r (auth.Anonymous without tokens).
func principal(r *http.Request) *auth.Principal {
	if p, ok := r.Context().Value(principalKey{}).(*auth.Principal); ok {
		return p
	}
	return auth.Anonymous
}

// ServeHTTP implements http.Handler: it authenticates, authorizes by
// route, applies the caller's rate limit, and counts the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	_, route := s.mux.Handler(r)
	if route == "" {
		route = "unmatched"
	}
	defer func() {
		s.metrics.observe(route, r.Method, sw.code, start, route == "GET /v1/stream" || route == "GET /v1/ws")
	}()
	n, known := needs[route]
	if !known && route == "unmatched" {
		n = needNothing // let the mux answer 404/405
	}
	if n == needNothing {
		s.mux.ServeHTTP(sw, r)
		return
	}
	p, err := s.opts.Auth.Authenticate(r)
	if err != nil {
		sw.Header().Set("WWW-Authenticate", `Bearer realm="semprop"`)
		writeError(sw, http.StatusUnauthorized, "Authorization", err.Error())
		return
	}
	allowed := true
	switch n {
	case needAdmin:
		allowed = p.Admin()
	case needPublish:
		allowed = p.CanPublishAny()
	case needSubscribe:
		allowed = p.CanSubscribeAny()
	}
	if !allowed {
		writeError(sw, http.StatusForbidden, "Authorization", "token "+p.Name+" may not use "+route)
		return
	}
	if ok, retry := p.Allow(); !ok {
		sw.Header().Set("Retry-After", strconv.Itoa(retry))
		writeError(sw, http.StatusTooManyRequests, "", "rate limit of token "+p.Name+" exceeded")
		return
	}
	s.mux.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
}

// Close ends every open stream with an "end" event and marks the server
// not ready. Call it before http.Server.Shutdown, which waits for open
// requests. Close is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.SetReady(false, "shutting down")
		close(s.done)
	})
}

// SetReady marks the server ready, or not ready with a reason (shown by
// /readyz; ingest answers 503 meanwhile).
func (s *Server) SetReady(ready bool, reason string) {
	if ready {
		s.ready.Store(true)
		return
	}
	s.notReady.Store(&reason)
	s.ready.Store(false)
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": *s.notReady.Load()})
		return
	}
	j := s.m.Journal()
	writeJSON(w, http.StatusOK, map[string]any{"ready": true, "last_seq": j.LastSeq(), "durable_seq": j.DurableSeq()})
}

// apiError is the JSON error body.
type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, field, msg string) {
	writeJSON(w, status, apiError{Error: msg, Field: field})
}

// writeErr maps an error to its status: event field errors are 400 (413 when
// too large), context cancellation 503.
func (s *Server) writeErr(w http.ResponseWriter, err error) {
	var fe *event.FieldError
	switch {
	case errors.As(err, &fe):
		status := http.StatusBadRequest
		if errors.Is(err, event.ErrTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		writeError(w, status, fe.Field, fe.Error())
	case errors.Is(err, propagate.ErrInvalidType):
		writeError(w, http.StatusBadRequest, "type", err.Error())
	case errors.Is(err, propagate.ErrClosed), errors.Is(err, propagate.ErrUnavailable),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, "", err.Error())
	default:
		s.log.Error("request failed", "err", err)
		writeError(w, http.StatusInternalServerError, "", err.Error())
	}
}
