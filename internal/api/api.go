// Package api is semprop's HTTP API (v1): CloudEvents ingest (structured,
// batch and binary mode), replay from the journal as NDJSON, Server-Sent
// Events and WebSocket streams, durable consumers (create, list, fetch,
// ack, delete), dynamic routes, the OpenAPI document, and liveness and
// readiness (/healthz, /readyz). Everything it sends out of the process is
// durable: replay, streams and consumers read the journal up to its
// durable seq, and ingest answers only once the events are durable. The
// daemon installs further handlers (metrics, profiles, rules, the
// cluster's routes) with Server.Handle.
//
// Every error, including an unknown route (404) or method (405), is JSON
// {"error": "...", "field": "..."}: 400 malformed, 401/403 authorization,
// 413 too large, 415 media type, 429 rate limit, 503 not ready or busy
// (with Retry-After), 507 the journal's disk is full. Error bodies never
// carry server paths; the details go to the log, throttled.
//
// ServeHTTP guards the API before routing: the Host and Origin checks of
// origin.go keep web pages out, and request bodies are bounded in size,
// time and, across requests, memory (HTTPLimits). NewHTTPServer and
// LimitListener bound what the listener and the http.Server hold.
package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/auth"
	"github.com/semprop/semprop/internal/journal"
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
	// HTTP bounds request bodies in time and, across requests, in memory;
	// pass the same value to NewHTTPServer and LimitListener.
	HTTP HTTPLimits
	// AllowedHosts are the host names (port ignored; "*.example.com" for
	// subdomains, "*" for any) served besides IP literals and localhost.
	// Empty: with tokens configured any name is served, without tokens
	// only those, which keeps DNS-rebinding pages out.
	AllowedHosts []string
	// AllowedOrigins are the browser origins ("https://app.example.com",
	// "*" for any) that may call the API besides the server's own.
	AllowedOrigins []string
	// Health, if set, is asked by /readyz; an error makes the server not
	// ready with the error's text as the reason (keep it free of paths).
	Health func() error
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
	access   map[string]need // routes added with HandleAccess

	cons    consumers
	stat    statusState // GET /v1/status: sections and rate samples
	metrics *httpMetrics

	limits  HTTPLimits
	body    *byteBudget // request bodies in flight
	hosts   hostPolicy
	origins originPolicy

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
	s := &Server{m: opts.Manager, log: throttledLogger(opts.Logger), opts: opts, mux: http.NewServeMux(), done: make(chan struct{}), cons: consumers{open: make(map[string]*propagate.Consumer)}}
	s.limits = opts.HTTP.withDefaults(opts.MaxBody)
	s.body = newByteBudget(s.limits.MaxInflightBody)
	s.hosts = newHostPolicy(opts.AllowedHosts, opts.Auth.Enabled())
	s.origins = newOriginPolicy(opts.AllowedOrigins)
	s.metrics = newHTTPMetrics(opts.Registerer, s.body)
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
		"GET /v1/status":                      s.status,
		"GET /healthz":                        s.healthz,
		"GET /readyz":                         s.readyz,
	} {
		s.Handle(pattern, h)
	}
	return s
}

// Access is what a route added with HandleAccess requires of a caller
// when tokens are configured.
type Access uint8

const (
	// AccessAdmin requires the admin scope (what Handle requires).
	AccessAdmin Access = iota
	// AccessPublic requires no token (static assets, probes).
	AccessPublic
	// AccessSubscribe requires a token with a subscribe scope; the handler
	// filters and redacts what it shows by Caller(r).
	AccessSubscribe
	// AccessSync requires the sync scope (or admin): the catalog exchange
	// between sync peers.
	AccessSync
)

// HandleAccess registers an extra handler like Handle, requiring access
// of its callers instead of the admin scope. Register before serving.
func (s *Server) HandleAccess(pattern string, a Access, h http.Handler) {
	n := map[Access]need{AccessAdmin: needAdmin, AccessPublic: needNothing, AccessSubscribe: needSubscribe, AccessSync: needSync}[a]
	s.routesMu.Lock()
	if s.access == nil {
		s.access = make(map[string]need)
	}
	s.access[pattern] = n
	s.routesMu.Unlock()
	s.Handle(pattern, h)
}

// Caller returns the authenticated caller of a request served by the
// Server: auth.Anonymous (who may see everything) without tokens.
func Caller(r *http.Request) *auth.Principal { return principal(r) }

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
	"GET /v1/status":                      needAdmin,
}

type need uint8

const (
	needAdmin need = iota
	needNothing
	needPublish
	needSubscribe
	needSync
)

type principalKey struct{}

// principal returns the caller of r (auth.Anonymous without tokens).
func principal(r *http.Request) *auth.Principal {
	if p, ok := r.Context().Value(principalKey{}).(*auth.Principal); ok {
		return p
	}
	return auth.Anonymous
}

// ServeHTTP implements http.Handler: it checks Host and Origin, answers
// unknown routes, authenticates, authorizes by route, applies the caller's
// rate limit, bounds the request body, and counts the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	h, route := s.mux.Handler(r)
	if route == "" {
		route = "unmatched"
	}
	defer func() {
		s.metrics.observe(route, r.Method, sw.code, start, route == "GET /v1/stream" || route == "GET /v1/ws")
	}()
	n, own := needs[route]
	if !own {
		s.routesMu.Lock()
		n = s.access[route]
		s.routesMu.Unlock()
	}
	if !own && route == "unmatched" {
		n = needNothing
	}
	if !s.hosts.allows(r.Host) {
		writeError(sw, http.StatusMisdirectedRequest, "Host", "host "+strconv.Quote(r.Host)+" is not served here; list it in allowed_hosts")
		return
	}
	open := n == needNothing && !stateChanging(r.Method)
	if !open && !s.origins.allows(r) {
		writeError(sw, http.StatusForbidden, "Origin", "cross-origin requests are refused; list the origin in allowed_origins")
		return
	}
	if route == "unmatched" {
		s.unmatched(sw, r, h)
		return
	}
	if n != needNothing {
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
		case needSync:
			allowed = p.CanSync()
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
		r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
	}
	if hasBody(r) {
		if stateChanging(r.Method) && !jsonBody(r, route, own) {
			writeError(sw, http.StatusUnsupportedMediaType, "Content-Type",
				"unsupported media type "+strconv.Quote(r.Header.Get("Content-Type"))+": send application/json")
			return
		}
		r2, release, err := s.guardBody(w, r)
		switch {
		case errors.Is(err, errBodyTooLarge):
			writeError(sw, http.StatusRequestEntityTooLarge, "", "body exceeds "+strconv.FormatInt(s.opts.MaxBody, 10)+" bytes")
			return
		case errors.Is(err, errBodyBusy):
			sw.Header().Set("Retry-After", "1")
			writeError(sw, http.StatusServiceUnavailable, "", "too many request bodies in flight; retry later")
			return
		case err != nil:
			writeError(sw, http.StatusBadRequest, "", "read body: "+err.Error())
			return
		}
		defer release()
		r = r2
	}
	s.mux.ServeHTTP(sw, r)
}

// unmatched answers a request no route matches: 404, or 405 with Allow
// when the path exists for other methods, as JSON. Other answers of the
// mux (redirects to a cleaned path) are passed on.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request, h http.Handler) {
	rec := &headerRecorder{h: make(http.Header)}
	h.ServeHTTP(rec, r)
	switch rec.code {
	case http.StatusNotFound:
		writeError(w, http.StatusNotFound, "", "no route for "+r.Method+" "+r.URL.Path)
	case http.StatusMethodNotAllowed:
		if a := rec.h.Get("Allow"); a != "" {
			w.Header().Set("Allow", a)
		}
		writeError(w, http.StatusMethodNotAllowed, "", "method "+r.Method+" not allowed on "+r.URL.Path)
	default:
		h.ServeHTTP(w, r)
	}
}

// headerRecorder records the status and headers a handler answers with
// and drops its body.
type headerRecorder struct {
	h    http.Header
	code int
}

func (r *headerRecorder) Header() http.Header { return r.h }

func (r *headerRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

func (r *headerRecorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return len(b), nil
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

// readyz answers 200 when the server is ready and its journal and Health
// are well, 503 with the reason otherwise. The journal's position
// (last_seq, durable_seq) is shown only to authenticated callers (to
// everyone without tokens).
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": *s.notReady.Load()})
		return
	}
	if reason := s.unhealthy(); reason != "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": reason})
		return
	}
	out := map[string]any{"ready": true}
	if _, err := s.opts.Auth.Authenticate(r); err == nil {
		j := s.m.Journal()
		out["last_seq"], out["durable_seq"] = j.LastSeq(), j.DurableSeq()
	}
	writeJSON(w, http.StatusOK, out)
}

// unhealthy returns why the server cannot take events now ("" when it
// can): the journal failed, or Options.Health says so.
func (s *Server) unhealthy() string {
	if err := s.m.Journal().Err(); err != nil {
		if noSpace(err) {
			return "journal: no space left on the device"
		}
		return "journal: cannot write (see the server log)"
	}
	if s.opts.Health != nil {
		if err := s.opts.Health(); err != nil {
			return err.Error()
		}
	}
	return ""
}

// publicMessage returns the text of err to show a client: the error's own
// text, unless it comes from storage (a full disk, an I/O error, a corrupt
// journal, anything naming a file), whose text names server paths; that
// is logged (throttled) and replaced by a generic message. Streams use it
// for their final error.
func (s *Server) publicMessage(err error) string {
	var pe *fs.PathError
	switch {
	case noSpace(err):
		s.log.Error("request failed: journal out of space", "err", err)
		return "insufficient storage: the journal's disk is full"
	case errors.Is(err, journal.ErrCorrupt), errors.Is(err, journal.ErrIO), errors.As(err, &pe):
		s.log.Error("request failed: storage", "err", err)
		return "the journal is unavailable"
	}
	return err.Error()
}

// noSpace reports whether err says the journal's file system is full.
func noSpace(err error) bool {
	return errors.Is(err, journal.ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// apiError is the JSON error body.
type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // type patterns say ">"; answers are JSON, not HTML
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, field, msg string) {
	writeJSON(w, status, apiError{Error: msg, Field: field})
}

// writeErr maps an error to its status: event field errors are 400 (413 when
// too large), unavailability and cancellation 503, a full disk 507, a
// failing journal 503, anything else 500. Storage and internal errors are
// answered with a generic message (their text names server paths) and
// logged, throttled.
func (s *Server) writeErr(w http.ResponseWriter, err error) {
	var fe *event.FieldError
	var pe *fs.PathError
	jerr := s.m.Journal().Err() // the cause, when a layer above flattened it
	switch {
	case errors.As(err, &fe):
		status := http.StatusBadRequest
		if errors.Is(err, event.ErrTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		writeError(w, status, fe.Field, fe.Error())
	case errors.Is(err, propagate.ErrInvalidType):
		writeError(w, http.StatusBadRequest, "type", err.Error())
	case noSpace(err), noSpace(jerr):
		s.log.Error("request failed: journal out of space", "err", err)
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusInsufficientStorage, "", "insufficient storage: the journal's disk is full")
	case errors.Is(err, journal.ErrIO), errors.Is(err, journal.ErrClosed), errors.Is(err, journal.ErrCorrupt), errors.As(err, &pe), jerr != nil:
		s.log.Error("request failed: journal", "err", err)
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "", "the journal is unavailable")
	case errors.Is(err, propagate.ErrClosed), errors.Is(err, propagate.ErrUnavailable),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, "", err.Error())
	default:
		s.log.Error("request failed", "err", err)
		writeError(w, http.StatusInternalServerError, "", "internal error")
	}
}
