package client

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

// HealthCheck is one health check of the daemon: a component's status
// (ok, degraded, failing), why, and the measurements behind it.
type HealthCheck struct {
	Name        string             `json:"name"`
	Component   string             `json:"component"`
	Status      string             `json:"status"`
	Reason      string             `json:"reason,omitempty"`
	Measurement map[string]float64 `json:"measurement,omitempty"`
	Time        time.Time          `json:"time"`
}

// Health is the daemon's health: the worst status of its checks, the
// number of checks per status, and (for admin tokens, or without tokens)
// the checks themselves.
type Health struct {
	Status string         `json:"status"`
	Counts map[string]int `json:"counts"`
	Checks []HealthCheck  `json:"checks,omitempty"`
}

// Health returns GET /v1/health. A failing daemon answers 503 with the
// same body: Health returns it with a nil error.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/health", nil)
	if err != nil {
		return h, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		e := &Error{Status: resp.StatusCode}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		return h, e
	}
	err = json.NewDecoder(resp.Body).Decode(&h)
	return h, err
}
