package guard

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/metrics"
)

// Stats are the guard's counters since it started.
type Stats struct {
	Listed          int               `json:"listed"`           // entries on the list
	Refused         map[string]uint64 `json:"refused"`          // operations refused, by operation
	Preserved       uint64            `json:"preserved"`        // files copied before destroy
	PreservedBytes  uint64            `json:"preserved_bytes"`  // their bytes
	PreserveSkipped uint64            `json:"preserve_skipped"` // empty, linked, not regular, too large
	PreserveFailed  uint64            `json:"preserve_failed"`  // copies that failed (the operation went ahead)
	SnapshotDestroy bool              `json:"snapshot_before_destroy"`
}

// Stats returns the counters.
func (g *Guard) Stats() Stats {
	st := Stats{Refused: map[string]uint64{}, Preserved: g.preserved.Load(), PreservedBytes: g.preservedBytes.Load(),
		PreserveSkipped: g.preserveSkipped.Load(), PreserveFailed: g.preserveFailed.Load(), SnapshotDestroy: g.cfg.SnapshotBeforeDestroy}
	if l := g.cur.Load(); l != nil {
		st.Listed = len(l.pids) + len(l.uids)
	}
	for i, n := range opNames {
		if v := g.refused[i].Load(); v > 0 {
			st.Refused[n] = v
		}
	}
	return st
}

var (
	descListed    = prometheus.NewDesc("semprop_guard_listed", "Processes and users on the guard list.", nil, nil)
	descRefused   = prometheus.NewDesc("semprop_guard_refused_total", "Operations through a mount refused by the guard.", []string{"op"}, nil)
	descPreserved = prometheus.NewDesc("semprop_guard_preserved_total", "Files copied into the snapshot store before an operation destroyed them.", nil, nil)
	descPresBytes = prometheus.NewDesc("semprop_guard_preserved_bytes_total", "Bytes of the files copied before destroy.", nil, nil)
	descSkipped   = prometheus.NewDesc("semprop_guard_preserve_skipped_total", "Destroyed files not copied: empty, other links, not regular, or too large.", nil, nil)
	descFailed    = prometheus.NewDesc("semprop_guard_preserve_failed_total", "Copies before destroy that failed; the operation went ahead.", nil, nil)
)

// Collector returns a Prometheus collector of the guard's counters, read
// at scrape time. Register it once.
func (g *Guard) Collector() prometheus.Collector { return &collector{g: g} }

type collector struct{ g *Guard }

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	metrics.Descs{descListed, descRefused, descPreserved, descPresBytes, descSkipped, descFailed}.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.g.Stats()
	metrics.Gauge(ch, descListed, float64(st.Listed))
	for i, n := range opNames {
		metrics.Counter(ch, descRefused, c.g.refused[i].Load(), n)
	}
	metrics.Counter(ch, descPreserved, st.Preserved)
	metrics.Counter(ch, descPresBytes, st.PreservedBytes)
	metrics.Counter(ch, descSkipped, st.PreserveSkipped)
	metrics.Counter(ch, descFailed, st.PreserveFailed)
}

// Status is the answer of GET /v1/guard.
type Status struct {
	Enabled bool    `json:"enabled"`
	Entries []Entry `json:"entries"`
	Stats   Stats   `json:"stats"`
}

// ReleaseRequest is the body of POST /v1/guard/release: a pid, or a uid
// with by_uid.
type ReleaseRequest struct {
	PID   int32  `json:"pid,omitempty"`
	UID   uint32 `json:"uid,omitempty"`
	ByUID bool   `json:"by_uid,omitempty"`
}

// Register adds the guard's routes to srv (both admin):
//
//	GET  /v1/guard           {"enabled", "entries": [...], "stats": {...}}
//	POST /v1/guard/release   {"pid": N} or {"uid": N, "by_uid": true}; 404 when not listed
func (g *Guard) Register(srv *api.Server) {
	srv.HandleAccess("GET /v1/guard", api.AccessAdmin, http.HandlerFunc(g.serveStatus))
	srv.HandleAccess("POST /v1/guard/release", api.AccessAdmin, http.HandlerFunc(g.serveRelease))
}

func (g *Guard) serveStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, Status{Enabled: g.cfg.Enabled, Entries: g.List(), Stats: g.Stats()})
}

func (g *Guard) serveRelease(w http.ResponseWriter, r *http.Request) {
	var req ReleaseRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
		return
	}
	if req.PID == 0 && !req.ByUID {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want a pid, or a uid with by_uid", "field": "pid"})
		return
	}
	err := g.Release(req.PID, req.UID, req.ByUID)
	switch {
	case errors.Is(err, ErrNotListed):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, Status{Enabled: g.cfg.Enabled, Entries: g.List(), Stats: g.Stats()})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
