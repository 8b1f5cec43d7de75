package client

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// ServerStatus is the operator's view of a daemon (GET /v1/status, admin).
type ServerStatus struct {
	Version       string    `json:"version"`
	GoVersion     string    `json:"go_version"`
	Started       time.Time `json:"started"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Journal       struct {
		FirstSeq          uint64  `json:"first_seq"`
		LastSeq           uint64  `json:"last_seq"`
		DurableSeq        uint64  `json:"durable_seq"`
		Bytes             int64   `json:"bytes"`
		Segments          int     `json:"segments"`
		Fsyncs            uint64  `json:"fsyncs"`
		FsyncAvgMS        float64 `json:"fsync_avg_ms"`
		FsyncP99MS        float64 `json:"fsync_p99_ms"`
		BackpressureWaits uint64  `json:"backpressure_waits"`
		NoSpace           bool    `json:"no_space"`
	} `json:"journal"`
	// Ingest counts the events made durable; PerSecond is over the time
	// since the previous status request (at least a second).
	Ingest struct {
		Published uint64  `json:"published"`
		PerSecond float64 `json:"per_second"`
	} `json:"ingest"`
	// Delivery counts the events routed to live subscribers.
	Delivery struct {
		Delivered    uint64  `json:"delivered"`
		PerSecond    float64 `json:"per_second"`
		Failed       uint64  `json:"failed"`
		Undelivered  uint64  `json:"undelivered"`
		Failovers    uint64  `json:"failovers"`
		LatencyP50MS float64 `json:"latency_p50_ms"`
		LatencyP99MS float64 `json:"latency_p99_ms"`
	} `json:"delivery"`
	Subscriptions []LiveSubscription `json:"subscriptions"`
	Routes        []RouteInfo        `json:"routes"`
	Consumers     []ConsumerLag      `json:"consumers"`
	// Cluster is the daemon's cluster status as JSON, nil when it is not
	// in a cluster.
	Cluster json.RawMessage `json:"-"`
	// Sections are the other sections the daemon adds (e.g. "captures"),
	// as JSON.
	Sections map[string]json.RawMessage `json:"-"`
}

// LiveSubscription is a live subscription of a daemon and its queue.
type LiveSubscription struct {
	ID        uint64 `json:"id"`
	Name      string `json:"name,omitempty"`
	Policy    string `json:"policy"`
	Depth     int    `json:"depth"`
	Capacity  int    `json:"capacity"`
	Matched   uint64 `json:"matched"`
	Delivered uint64 `json:"delivered"`
	Dropped   uint64 `json:"dropped"`
}

// ConsumerLag is a durable consumer in a daemon's status.
type ConsumerLag struct {
	Name         string `json:"name"`
	Owner        string `json:"owner,omitempty"`
	Open         bool   `json:"open"`
	Cursor       uint64 `json:"cursor"`
	Lag          uint64 `json:"lag"` // the journal's durable seq - Cursor
	Pending      int    `json:"pending"`
	Redelivered  uint64 `json:"redelivered"`
	DeadLettered uint64 `json:"dead_lettered"`
}

// UnmarshalJSON decodes a status, keeping the cluster and unknown
// sections as JSON.
func (s *ServerStatus) UnmarshalJSON(b []byte) error {
	type plain ServerStatus
	if err := json.Unmarshal(b, (*plain)(s)); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for _, k := range []string{"version", "go_version", "started", "uptime_seconds", "journal", "ingest", "delivery",
		"subscriptions", "routes", "consumers"} {
		delete(all, k)
	}
	if c, ok := all["cluster"]; ok {
		if string(c) != "null" {
			s.Cluster = c
		}
		delete(all, "cluster")
	}
	s.Sections = all
	return nil
}

// Status returns the daemon's status (GET /v1/status; admin when tokens
// are configured).
func (c *Client) Status(ctx context.Context) (ServerStatus, error) {
	var st ServerStatus
	resp, err := c.do(ctx, http.MethodGet, "/v1/status", nil, "", nil)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// MarshalJSON encodes a status as the server sends it, with the cluster
// (null when none) and the other sections.
func (s ServerStatus) MarshalJSON() ([]byte, error) {
	type plain ServerStatus
	b, err := json.Marshal(plain(s))
	if err != nil {
		return nil, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	for k, v := range s.Sections {
		all[k] = v
	}
	all["cluster"] = json.RawMessage("null")
	if len(s.Cluster) > 0 {
		all["cluster"] = s.Cluster
	}
	return json.Marshal(all)
}
