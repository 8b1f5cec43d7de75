package monitor

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/semprop/semprop/internal/api"
)

// AlertsReport is the body of GET /v1/alerts.
type AlertsReport struct {
	Alerts   []*Alert  `json:"alerts"`
	Silences []Silence `json:"silences"`
}

// SilenceRequest is the body of POST /v1/silences: matchers, and either
// EndsAt or a Duration ("2h", "1d") from StartsAt (default now).
type SilenceRequest struct {
	Matchers  []string  `json:"matchers"`
	StartsAt  time.Time `json:"starts_at,omitzero"`
	EndsAt    time.Time `json:"ends_at,omitzero"`
	Duration  string    `json:"duration,omitempty"`
	CreatedBy string    `json:"created_by"`
	Comment   string    `json:"comment"`
}

// Register serves the monitor's routes (admin only, since alerts and
// checks name trees, consumers and paths): GET /v1/alerts (?state=
// pending|firing|resolved), POST /v1/alerts (alerts from outside, in
// Alertmanager's API v2 format), GET and POST /v1/silences, DELETE
// /v1/silences/{id}; and GET /v1/health (public, detailed for admins)
// when Options.Health is set.
func (m *Monitor) Register(srv *api.Server) {
	srv.HandleAccess("GET /v1/alerts", api.AccessAdmin, http.HandlerFunc(m.listAlerts))
	srv.HandleAccess("POST /v1/alerts", api.AccessAdmin, http.HandlerFunc(m.postAlerts))
	srv.HandleAccess("GET /v1/silences", api.AccessAdmin, http.HandlerFunc(m.listSilences))
	srv.HandleAccess("POST /v1/silences", api.AccessAdmin, http.HandlerFunc(m.addSilence))
	srv.HandleAccess("DELETE /v1/silences/{id}", api.AccessAdmin, http.HandlerFunc(m.deleteSilence))
	if m.opts.Health != nil {
		srv.HandleAccess("GET /v1/health", api.AccessPublic, m.opts.Health.Handler())
	}
}

func (m *Monitor) listAlerts(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	switch state {
	case "", StatePending, StateFiring, StateResolved:
	default:
		writeError(w, http.StatusBadRequest, "state", "state: want pending, firing or resolved")
		return
	}
	rep := AlertsReport{Alerts: []*Alert{}, Silences: m.Silences()}
	for _, a := range m.Alerts() {
		if state == "" || a.State == state {
			rep.Alerts = append(rep.Alerts, a)
		}
	}
	writeJSON(w, http.StatusOK, rep)
}

func (m *Monitor) postAlerts(w http.ResponseWriter, r *http.Request) {
	var pas []PostableAlert
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	if err := dec.Decode(&pas); err != nil {
		writeError(w, http.StatusBadRequest, "", "body: want a JSON array of alerts (Alertmanager API v2)")
		return
	}
	if err := m.Post(pas); err != nil {
		writeError(w, http.StatusBadRequest, "labels", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"accepted": len(pas)})
}

func (m *Monitor) listSilences(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]Silence{"silences": m.Silences()})
}

func (m *Monitor) addSilence(w http.ResponseWriter, r *http.Request) {
	var req SilenceRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "", "body: want a JSON silence")
		return
	}
	s := Silence{Matchers: req.Matchers, StartsAt: req.StartsAt, EndsAt: req.EndsAt, CreatedBy: req.CreatedBy, Comment: req.Comment}
	if s.CreatedBy == "" {
		if p := api.Caller(r); p != nil {
			s.CreatedBy = p.Name
		}
	}
	if req.Duration != "" {
		d, err := ParseDuration(req.Duration)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "duration", "duration: want e.g. 2h or 1d")
			return
		}
		start := s.StartsAt
		if start.IsZero() {
			start = m.opts.Now()
		}
		s.StartsAt, s.EndsAt = start, start.Add(d)
	}
	if s.EndsAt.IsZero() {
		writeError(w, http.StatusBadRequest, "ends_at", "a silence needs ends_at or duration")
		return
	}
	out, err := m.AddSilence(s)
	if err != nil {
		if errors.Is(err, ErrMatcher) {
			writeError(w, http.StatusBadRequest, "matchers", err.Error())
			return
		}
		writeError(w, http.StatusInternalServerError, "", "could not save the silence")
		m.log.Warn("monitor: add silence", "err", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (m *Monitor) deleteSilence(w http.ResponseWriter, r *http.Request) {
	err := m.ExpireSilence(r.PathValue("id"))
	switch {
	case errors.Is(err, ErrNoSilence):
		writeError(w, http.StatusNotFound, "id", "no such silence")
	case err != nil:
		writeError(w, http.StatusInternalServerError, "", "could not save the silences")
		m.log.Warn("monitor: expire silence", "err", err)
	default:
		writeJSON(w, http.StatusOK, map[string]string{"expired": r.PathValue("id")})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, field, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
		Field string `json:"field,omitempty"`
	}{msg, field})
}
