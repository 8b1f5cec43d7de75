package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Alert is one alert of the daemon's monitor: its labels (alertname
// among them), annotations, state (pending, firing, resolved) and what
// mutes it (silences, inhibiting alerts' fingerprints).
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	State       string            `json:"state"`
	Value       float64           `json:"value"`
	ActiveAt    time.Time         `json:"active_at"`
	FiredAt     time.Time         `json:"fired_at,omitzero"`
	LastTrue    time.Time         `json:"last_true"`
	ResolvedAt  time.Time         `json:"resolved_at,omitzero"`
	EndsAt      time.Time         `json:"ends_at,omitzero"`
	Fingerprint string            `json:"fingerprint"`
	SilencedBy  []string          `json:"silenced_by,omitempty"`
	InhibitedBy []string          `json:"inhibited_by,omitempty"`
	Source      string            `json:"source,omitempty"`
}

// Silence mutes the alerts its matchers select between StartsAt and
// EndsAt. Matchers are written like `alertname="DiskFull"` or
// `tree=~"/srv/.*"` (=, !=, =~, !~).
type Silence struct {
	ID        string    `json:"id,omitempty"`
	Matchers  []string  `json:"matchers"`
	StartsAt  time.Time `json:"starts_at,omitzero"`
	EndsAt    time.Time `json:"ends_at,omitzero"`
	CreatedBy string    `json:"created_by,omitempty"`
	Comment   string    `json:"comment,omitempty"`
}

// Alerts lists the daemon's alerts (admin) and its silences; state, if
// not empty, keeps the alerts in that state.
func (c *Client) Alerts(ctx context.Context, state string) ([]Alert, []Silence, error) {
	var out struct {
		Alerts   []Alert   `json:"alerts"`
		Silences []Silence `json:"silences"`
	}
	path := "/v1/alerts"
	if state != "" {
		path += "?" + url.Values{"state": {state}}.Encode()
	}
	err := c.call(ctx, http.MethodGet, path, &out)
	return out.Alerts, out.Silences, err
}

// Silence creates a silence (admin) lasting d from s.StartsAt (now if
// zero), or until s.EndsAt when d is 0, and returns it with its ID.
func (c *Client) Silence(ctx context.Context, s Silence, d time.Duration) (Silence, error) {
	body := map[string]any{"matchers": s.Matchers, "created_by": s.CreatedBy, "comment": s.Comment}
	if !s.StartsAt.IsZero() {
		body["starts_at"] = s.StartsAt
	}
	if d > 0 {
		body["duration"] = durationString(d)
	} else {
		body["ends_at"] = s.EndsAt
	}
	b, err := json.Marshal(body)
	if err != nil {
		return Silence{}, err
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/silences", b, "application/json", nil)
	if err != nil {
		return Silence{}, err
	}
	defer resp.Body.Close()
	var out Silence
	err = json.NewDecoder(resp.Body).Decode(&out)
	return out, err
}

// durationString writes d in whole seconds for the server ("90s"), at
// least one second.
func durationString(d time.Duration) string {
	secs := int64(d / time.Second)
	if secs < 1 {
		secs = 1
	}
	return strconv.FormatInt(secs, 10) + "s"
}

// Unsilence expires the silence id now (admin); an unknown id is a 404
// *Error.
func (c *Client) Unsilence(ctx context.Context, id string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/silences/"+url.PathEscape(id), nil, "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// PostAlerts sends alerts from outside to the daemon's monitor (admin),
// in Alertmanager's API v2 form: labels (alertname required),
// annotations, startsAt and endsAt (default five minutes from now: post
// again to keep an alert firing).
func (c *Client) PostAlerts(ctx context.Context, alerts []Alert) error {
	type postable struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations,omitempty"`
		StartsAt    time.Time         `json:"startsAt,omitzero"`
		EndsAt      time.Time         `json:"endsAt,omitzero"`
	}
	ps := make([]postable, len(alerts))
	for i, a := range alerts {
		ps[i] = postable{Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.FiredAt, EndsAt: a.EndsAt}
	}
	b, err := json.Marshal(ps)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/alerts", b, "application/json", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
