package api

import (
	"cmp"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/semprop/semprop/internal/route"
)

// started is when the process started, for uptime.
var started = time.Now()

// statusState holds what GET /v1/status needs between requests: the
// sections other components add and the last sample of the counters the
// rates are computed from.
type statusState struct {
	mu       sync.Mutex
	sections map[string]func() any
	sample   rateSample // the counters at the last rate computation
	rates    [2]float64 // published/s, delivered/s over the last window
}

type rateSample struct {
	at                   time.Time
	published, delivered uint64
}

// builtinSections are the keys of GET /v1/status that AddStatus may not
// replace.
var builtinSections = []string{"version", "go_version", "started", "uptime_seconds", "journal", "ingest",
	"delivery", "subscriptions", "routes", "consumers"}

// AddStatus adds a section to GET /v1/status and `semprop status`: fn is
// called on every status request, from the request's goroutine, and its
// result is encoded as JSON under name (e.g. "captures", "cluster"). A
// later call with the same name replaces the section. It panics when name
// is one of the built-in sections. Safe for concurrent use.
func (s *Server) AddStatus(name string, fn func() any) {
	if slices.Contains(builtinSections, name) || name == "" {
		panic("api: AddStatus: section " + name + " is built in")
	}
	s.stat.mu.Lock()
	defer s.stat.mu.Unlock()
	if s.stat.sections == nil {
		s.stat.sections = make(map[string]func() any)
	}
	s.stat.sections[name] = fn
}

// journalStatus is the journal section of GET /v1/status.
type journalStatus struct {
	FirstSeq          uint64  `json:"first_seq"`
	LastSeq           uint64  `json:"last_seq"`
	DurableSeq        uint64  `json:"durable_seq"`
	Bytes             int64   `json:"bytes"`
	Segments          int     `json:"segments"`
	Fsyncs            uint64  `json:"fsyncs"`
	FsyncAvgMS        float64 `json:"fsync_avg_ms"`
	FsyncP99MS        float64 `json:"fsync_p99_ms"` // bucket bound: at most twice the true value
	BackpressureWaits uint64  `json:"backpressure_waits"`
	NoSpace           bool    `json:"no_space"`
}

// subscriptionStatus is one live subscription in GET /v1/status.
type subscriptionStatus struct {
	ID        uint64 `json:"id"`
	Name      string `json:"name,omitempty"`
	Policy    string `json:"policy"`
	Depth     int    `json:"depth"`
	Capacity  int    `json:"capacity"`
	Matched   uint64 `json:"matched"`
	Delivered uint64 `json:"delivered"`
	Dropped   uint64 `json:"dropped"`
}

// consumerStatus is one durable consumer in GET /v1/status.
type consumerStatus struct {
	Name         string `json:"name"`
	Owner        string `json:"owner,omitempty"`
	Open         bool   `json:"open"`
	Cursor       uint64 `json:"cursor"`
	Lag          uint64 `json:"lag"`
	Pending      int    `json:"pending"`
	Redelivered  uint64 `json:"redelivered"`
	DeadLettered uint64 `json:"dead_lettered"`
}

// status handles GET /v1/status (admin): one view of the daemon for
// operators, `semprop status`. Rates are over the time since the previous
// status request (at least a second; since the start on the first).
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	st := s.m.Stats()
	js := s.m.Journal().Stats()
	out := map[string]any{
		"started":        started.UTC(),
		"uptime_seconds": now.Sub(started).Seconds(),
		"cluster":        nil,
	}
	out["version"], out["go_version"] = buildVersion()
	j := journalStatus{FirstSeq: js.FirstSeq, LastSeq: js.LastSeq, DurableSeq: js.DurableSeq, Bytes: js.Bytes,
		Segments: js.Segments, Fsyncs: js.Fsyncs, BackpressureWaits: js.BackpressureWaits, NoSpace: js.NoSpace}
	if js.Fsyncs > 0 {
		j.FsyncAvgMS = float64(js.FsyncNanos) / float64(js.Fsyncs) / 1e6
		j.FsyncP99MS = float64(js.FsyncP99) / 1e6
	}
	out["journal"] = j
	pubRate, delRate := s.rates(now, st.Published, st.Routing.Delivered)
	out["ingest"] = map[string]any{"published": st.Published, "per_second": pubRate}
	out["delivery"] = map[string]any{
		"delivered": st.Routing.Delivered, "per_second": delRate, "failed": st.Routing.Failed,
		"undelivered": st.Routing.Undelivered, "failovers": st.Routing.Failovers,
		"latency_p50_ms": ms(st.Latency.Quantile(0.5)), "latency_p99_ms": ms(st.Latency.Quantile(0.99)),
	}
	subs := make([]subscriptionStatus, 0, len(st.Subscriptions))
	for _, ss := range st.Subscriptions {
		subs = append(subs, subscriptionStatus{ID: ss.ID, Name: ss.Name, Policy: ss.Policy.String(), Depth: ss.Depth,
			Capacity: ss.Capacity, Matched: ss.Matched, Delivered: ss.Delivered, Dropped: ss.Dropped})
	}
	slices.SortFunc(subs, func(a, b subscriptionStatus) int { return cmp.Compare(a.ID, b.ID) })
	out["subscriptions"] = subs
	routes := []route.RouteInfo{}
	for _, ri := range s.m.Routes() {
		if !strings.HasPrefix(ri.Name, "sub-") { // a subscription's own route
			routes = append(routes, ri)
		}
	}
	out["routes"] = routes
	out["consumers"] = s.consumerStatuses()
	s.stat.mu.Lock()
	sections := make(map[string]func() any, len(s.stat.sections))
	for k, fn := range s.stat.sections {
		sections[k] = fn
	}
	s.stat.mu.Unlock()
	for k, fn := range sections {
		out[k] = fn()
	}
	writeJSON(w, http.StatusOK, out)
}

// consumerStatuses lists every stored consumer with its lag; the backlog
// is not counted (that reads the journal; see GET /v1/subscriptions).
func (s *Server) consumerStatuses() []consumerStatus {
	out := []consumerStatus{}
	ids, err := s.m.ConsumerNames()
	if err != nil {
		return out
	}
	for _, id := range ids {
		spec, _, aerr := s.storedSpec(id)
		if aerr != nil {
			continue
		}
		info, err := s.m.ConsumerStatus(id, nil, -1)
		if err != nil {
			continue
		}
		cs := consumerStatus{Name: spec.Name, Open: info.Open, Cursor: info.Cursor,
			Lag: info.Lag, Pending: info.Pending, Redelivered: info.Redelivered, DeadLettered: info.DeadLettered}
		if s.opts.Auth.Enabled() {
			cs.Owner = spec.Owner // without tokens every consumer is the anonymous caller's
		}
		out = append(out, cs)
	}
	return out
}

// rates returns the published and delivered events per second since the
// last sample; a new sample is taken when the last is a second old or
// more, so that requests close together share one window.
func (s *Server) rates(now time.Time, published, delivered uint64) (float64, float64) {
	s.stat.mu.Lock()
	defer s.stat.mu.Unlock()
	last := s.stat.sample
	if last.at.IsZero() {
		last = rateSample{at: started}
	}
	if d := now.Sub(last.at).Seconds(); d >= 1 || s.stat.sample.at.IsZero() {
		if d > 0 {
			s.stat.rates = [2]float64{float64(published-last.published) / d, float64(delivered-last.delivered) / d}
		}
		s.stat.sample = rateSample{at: now, published: published, delivered: delivered}
	}
	return s.stat.rates[0], s.stat.rates[1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// buildVersion returns the module version (with the VCS revision the
// binary was built from) and the Go version, from the build information.
func buildVersion() (version, goVersion string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown", ""
	}
	version = bi.Main.Version
	if version == "" || version == "(devel)" {
		version = "dev"
	}
	var rev, dirty string
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.modified":
			if kv.Value == "true" {
				dirty = "+modified"
			}
		}
	}
	if rev != "" {
		version += " (" + rev[:min(12, len(rev))] + dirty + ")"
	}
	return version, bi.GoVersion
}
