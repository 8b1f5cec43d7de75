package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Output is one of a daemon's outputs (GET /v1/outputs, admin): where its
// cursor is and what it forwarded.
type Output struct {
	Name  string `json:"name"`
	Type  string `json:"type"`  // kafka, nats, webhook, file or syslog
	State string `json:"state"` // starting, ok, retrying or stopped
	// Cursor is the last seq the output is done with; Head the journal's
	// durable seq; Lag = Head - Cursor.
	Cursor       uint64    `json:"cursor"`
	Head         uint64    `json:"head"`
	Lag          uint64    `json:"lag"`
	Sent         uint64    `json:"sent"`
	Batches      uint64    `json:"batches"`
	Retries      uint64    `json:"retries"`
	DeadLettered uint64    `json:"dead_lettered"`
	Skipped      uint64    `json:"skipped"`
	Gaps         uint64    `json:"gaps"`
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
	// DelayP50 and DelayP99: from the event being read (durable) to the
	// target's acknowledgement.
	DelayP50 time.Duration `json:"delay_p50_ns"`
	DelayP99 time.Duration `json:"delay_p99_ns"`
	// Publish is how a NATS output publishes on its current connection:
	// "fast_batch" (JetStream fast batches) or "per_message".
	Publish string `json:"publish,omitempty"`
}

// Outputs lists the daemon's outputs (admin scope). A daemon without
// outputs answers with an empty list.
func (c *Client) Outputs(ctx context.Context) ([]Output, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/outputs", nil, "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Outputs []Output `json:"outputs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("client: outputs: %w", err)
	}
	return body.Outputs, nil
}
