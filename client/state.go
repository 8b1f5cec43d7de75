package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// StateQuery selects entries of the daemon's sync catalog (GET /v1/state).
type StateQuery struct {
	Tree string // only this tree ("" for every tree)
	Path string // glob on the path relative to the tree ("docs/**/*.md")
	// Consistency is "eventual" (the default), "causal", "session" or
	// "strong" (refused by a daemon that is not in a cluster).
	Consistency string
	// Session is the token of an earlier StateResult (its Session field):
	// with consistency "session" the daemon answers only once it has seen
	// everything that token covers (read-your-writes, monotonic reads).
	Session   string
	Deleted   bool // include deleted entries (tombstones)
	Conflicts bool // only entries in conflict
	Limit     int  // at most this many entries (0: all)
}

// StateVersion is one version of a catalog entry: what one instance saw
// of the file, and the change that made it.
type StateVersion struct {
	Size     int64             `json:"size"`
	MTime    int64             `json:"mtime"` // Unix nanoseconds
	Hash     string            `json:"hash,omitempty"`
	UID      uint32            `json:"uid"`
	Dir      bool              `json:"dir,omitempty"`
	Deleted  bool              `json:"deleted,omitempty"`
	Instance string            `json:"instance"` // the instance that saw the event
	Seq      uint64            `json:"seq"`      // its seq in that instance's journal
	HLC      string            `json:"hlc,omitempty"`
	Origin   string            `json:"origin"`
	Counter  uint64            `json:"counter"`
	VV       map[string]uint64 `json:"vv"` // the version vector of the entry's history
}

// ModTime returns MTime as a time.
func (v StateVersion) ModTime() time.Time { return time.Unix(0, v.MTime) }

// StateEntry is one file of the catalog. Conflict is true while concurrent
// changes made on different instances are unresolved: Versions then holds
// each of them.
type StateEntry struct {
	Tree     string         `json:"tree"`
	Path     string         `json:"path"`
	Conflict bool           `json:"conflict"`
	Deleted  bool           `json:"deleted"`
	Versions []StateVersion `json:"versions"`
}

// StateResult is the answer to a state query.
type StateResult struct {
	Consistency string            `json:"consistency"`
	Summary     map[string]uint64 `json:"summary"`
	// Session is the token to pass as StateQuery.Session next time.
	Session string       `json:"session"`
	Entries []StateEntry `json:"entries"`
}

// State reads the daemon's sync catalog (subscribe scope; entries are
// filtered by the token's paths). A session read the daemon cannot serve
// yet fails with a 503 *Error: retry it, or read elsewhere.
func (c *Client) State(ctx context.Context, q StateQuery) (*StateResult, error) {
	v := url.Values{}
	for k, s := range map[string]string{"tree": q.Tree, "path": q.Path, "consistency": q.Consistency} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Deleted {
		v.Set("deleted", "true")
	}
	if q.Conflicts {
		v.Set("conflicts", "true")
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var hdr http.Header
	if q.Session != "" {
		hdr = http.Header{"Semprop-Session": {q.Session}}
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/state?"+v.Encode(), nil, "", hdr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out StateResult
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SyncPeer is a peer of the daemon's sync, as GET /v1/sync shows it.
type SyncPeer struct {
	URL       string            `json:"url"`
	Name      string            `json:"name,omitempty"`
	Static    bool              `json:"static"`
	Acked     map[string]uint64 `json:"acked,omitempty"`
	Fails     int               `json:"fails"`
	LastOK    *time.Time        `json:"last_ok,omitempty"`
	LastError string            `json:"last_error,omitempty"`
}

// SyncStatus is the daemon's sync at a glance (admin).
type SyncStatus struct {
	Name       string            `json:"name"`
	Summary    map[string]uint64 `json:"summary"`
	Applied    uint64            `json:"applied_seq"`
	Entries    int               `json:"entries"`
	Tombstones int               `json:"tombstones"`
	Conflicts  int               `json:"conflicts"`
	Peers      []SyncPeer        `json:"peers"`
}

// SyncStatus returns the daemon's sync status (admin). A daemon without
// sync answers 404.
func (c *Client) SyncStatus(ctx context.Context) (*SyncStatus, error) {
	var out SyncStatus
	if err := c.call(ctx, http.MethodGet, "/v1/sync", &out); err != nil {
		return nil, err
	}
	return &out, nil
}
