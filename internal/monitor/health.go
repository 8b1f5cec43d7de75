package monitor

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/api"
)

// Status is the health of a component.
type Status uint8

// Statuses, from good to bad.
const (
	StatusOK       Status = iota // working as expected
	StatusDegraded               // working, with a problem that needs attention
	StatusFailing                // not doing its job
)

var statusNames = [...]string{"ok", "degraded", "failing"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "unknown"
}

// MarshalText writes the status by name.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a status name.
func (s *Status) UnmarshalText(b []byte) error {
	i := slices.Index(statusNames[:], string(b))
	if i < 0 {
		return fmt.Errorf("%w: status %q", ErrConfig, b)
	}
	*s = Status(i)
	return nil
}

// Check is the result of one health check: its status, why, and the
// measurements behind it (name → value, in the units the names say).
type Check struct {
	Name        string             `json:"name"`
	Component   string             `json:"component"`
	Status      Status             `json:"status"`
	Reason      string             `json:"reason,omitempty"`
	Measurement map[string]float64 `json:"measurement,omitempty"`
	Time        time.Time          `json:"time"`
}

// worse raises c's status to s with reason if s is worse than what c has
// (the first reason of the worst status wins).
func (c *Check) worse(s Status, format string, args ...any) {
	if s > c.Status {
		c.Status = s
		c.Reason = fmt.Sprintf(format, args...)
	}
}

func (c *Check) measure(name string, v float64) {
	if c.Measurement == nil {
		c.Measurement = map[string]float64{}
	}
	c.Measurement[name] = v
}

// CheckFunc computes a check; it must be quick and safe to call from any
// goroutine. Health runs at most one call at a time per check; a caller
// that finds it running gets the check's latest result instead.
type CheckFunc func() Check

type registered struct {
	name, component string
	fn              CheckFunc
	mu              sync.Mutex // serializes fn (checks keep counter deltas)

	lastMu sync.Mutex
	last   Check // the latest result, for callers that find fn running
}

// run computes the check, or, while another caller computes it, returns
// its latest result: a check that gathers the registry holding the
// Health's collector (HTTP) then reads its own latest result instead of
// recursing into itself.
func (r *registered) run() Check {
	if !r.mu.TryLock() {
		r.lastMu.Lock()
		defer r.lastMu.Unlock()
		return r.last
	}
	c := r.fn()
	r.mu.Unlock()
	r.lastMu.Lock()
	r.last = c
	r.lastMu.Unlock()
	return c
}

// Health is the registry of the daemon's health checks. Register checks
// before serving; Checks and Ready may be called concurrently.
type Health struct {
	mu     sync.Mutex
	checks map[string]*registered
	// critical components make Ready fail when their check fails.
	critical map[string]bool
	now      func() time.Time

	desc *prometheus.Desc
}

// NewHealth returns an empty registry. critical lists the components
// whose failing check makes the daemon not ready (default: journal, disk,
// cluster).
func NewHealth(critical ...string) *Health {
	if len(critical) == 0 {
		critical = []string{"journal", "disk", "cluster"}
	}
	h := &Health{checks: map[string]*registered{}, critical: map[string]bool{}, now: time.Now,
		desc: prometheus.NewDesc("semprop_health_status", "Health of a component's check: 0 ok, 1 degraded, 2 failing.", []string{"check", "component"}, nil)}
	for _, c := range critical {
		h.critical[c] = true
	}
	return h
}

// Register adds (or replaces) the check name of component.
func (h *Health) Register(name, component string, fn CheckFunc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = &registered{name: name, component: component, fn: fn}
}

// Unregister removes a check (a tree that is no longer captured).
func (h *Health) Unregister(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.checks, name)
}

// Components returns the components with at least one check.
func (h *Health) Components() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := map[string]bool{}
	for _, r := range h.checks {
		set[r.component] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// Missing returns the components of want that have no check: the
// coverage test of the daemon passes the components it started.
func (h *Health) Missing(want []string) []string {
	have := h.Components()
	var out []string
	for _, c := range want {
		if !slices.Contains(have, c) {
			out = append(out, c)
		}
	}
	return out
}

// Checks runs every check and returns the results sorted by name.
func (h *Health) Checks() []Check {
	h.mu.Lock()
	rs := slices.Collect(maps.Values(h.checks))
	h.mu.Unlock()
	slices.SortFunc(rs, func(a, b *registered) int { return strings.Compare(a.name, b.name) })
	out := make([]Check, 0, len(rs))
	now := h.now()
	for _, r := range rs {
		c := r.run()
		c.Name, c.Component = r.name, r.component
		if c.Time.IsZero() {
			c.Time = now
		}
		out = append(out, c)
	}
	return out
}

// Overall returns the worst status of checks.
func Overall(checks []Check) Status {
	s := StatusOK
	for _, c := range checks {
		s = max(s, c.Status)
	}
	return s
}

// Ready returns nil unless the check of a critical component fails; the
// error (wrapping ErrNotReady) names the checks and their reasons. Use it
// as api.Options.Health for /readyz.
func (h *Health) Ready() error {
	var errs []string
	for _, c := range h.Checks() {
		if c.Status == StatusFailing && h.critical[c.Component] {
			errs = append(errs, c.Name+": "+c.Reason)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrNotReady, strings.Join(errs, "; "))
	}
	return nil
}

// Collector exports semprop_health_status per check, running the checks
// when collected (a check already running reports its latest result, so
// a check may gather the registry that holds this collector).
func (h *Health) Collector() prometheus.Collector { return (*healthCollector)(h) }

type healthCollector Health

func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	for _, chk := range (*Health)(c).Checks() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(chk.Status), chk.Name, chk.Component)
	}
}

// HealthReport is the body of GET /v1/health.
type HealthReport struct {
	Status Status         `json:"status"`
	Counts map[string]int `json:"counts"`
	Checks []Check        `json:"checks,omitempty"` // admin callers only
}

// Handler serves GET /v1/health (Monitor.Register installs it): the
// overall status and, for admin callers (or anyone without tokens),
// every check with its reason and measurements; other callers get the
// counts per status only, since check names and reasons may name trees
// and consumers. It answers 503 when the overall status is failing.
func (h *Health) Handler() http.Handler { return http.HandlerFunc(h.serve) }

func (h *Health) serve(w http.ResponseWriter, r *http.Request) {
	checks := h.Checks()
	rep := HealthReport{Status: Overall(checks), Counts: map[string]int{"ok": 0, "degraded": 0, "failing": 0}}
	for _, c := range checks {
		rep.Counts[c.Status.String()]++
	}
	if p := api.Caller(r); p != nil && p.Admin() {
		rep.Checks = checks
	}
	code := http.StatusOK
	if rep.Status == StatusFailing {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, rep)
}
