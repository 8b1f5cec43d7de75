package client

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// GuardEntry is a process (or, with ByUID, a user) on the guard list of
// the daemon's FUSE mounts: its mutating operations through a mount are
// refused until Until.
type GuardEntry struct {
	PID     int32     `json:"pid,omitempty"`
	Start   string    `json:"start,omitempty"`
	UID     uint32    `json:"uid"`
	ByUID   bool      `json:"by_uid,omitempty"`
	Until   time.Time `json:"until"`
	Reason  string    `json:"reason,omitempty"`
	Since   time.Time `json:"since"`
	Refused uint64    `json:"refused"`
}

// GuardStats are the guard's counters.
type GuardStats struct {
	Listed          int               `json:"listed"`
	Refused         map[string]uint64 `json:"refused"`
	Preserved       uint64            `json:"preserved"`
	PreservedBytes  uint64            `json:"preserved_bytes"`
	PreserveSkipped uint64            `json:"preserve_skipped"`
	PreserveFailed  uint64            `json:"preserve_failed"`
	SnapshotDestroy bool              `json:"snapshot_before_destroy"`
}

// GuardStatus is the answer of GET /v1/guard.
type GuardStatus struct {
	Enabled bool         `json:"enabled"`
	Entries []GuardEntry `json:"entries"`
	Stats   GuardStats   `json:"stats"`
}

// Guard returns the guard list and its counters (GET /v1/guard, admin).
// A daemon without the guard answers 404.
func (c *Client) Guard(ctx context.Context) (*GuardStatus, error) {
	var out GuardStatus
	if err := c.call(ctx, http.MethodGet, "/v1/guard", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GuardRelease takes process pid (when not 0) and, with byUID, user uid
// off the guard list (POST /v1/guard/release, admin) and returns the list
// after. What is not listed is an *Error with status 404.
func (c *Client) GuardRelease(ctx context.Context, pid int32, uid uint32, byUID bool) (*GuardStatus, error) {
	body, _ := json.Marshal(map[string]any{"pid": pid, "uid": uid, "by_uid": byUID})
	resp, err := c.do(ctx, http.MethodPost, "/v1/guard/release", body, "application/json", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out GuardStatus
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return &out, nil
}
