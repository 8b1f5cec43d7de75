package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// AuditFilter selects audit records for Audit; the zero value selects the
// newest records of every rule (at most the daemon's default, 1000).
type AuditFilter struct {
	Rule  string // only this rule's records
	Kind  string // only this kind: intent, done, failed, interrupted, rollback, rolledback, rollback-failed, match
	Since string // an RFC 3339 time, or a duration such as 1h meaning that long ago
	Limit int    // at most this many, the newest (0: the daemon's default)
}

// AuditCheck is one precondition of an action and its result.
type AuditCheck struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// AuditRecord is one record of the daemon's audit trail (docs/actions.md).
type AuditRecord struct {
	Seq           uint64          `json:"seq"`
	Time          time.Time       `json:"time"`
	Prev          string          `json:"prev"`
	Kind          string          `json:"kind"`
	Key           string          `json:"key,omitempty"`
	Rule          string          `json:"rule,omitempty"`
	Match         string          `json:"match,omitempty"`
	MatchSeq      uint64          `json:"match_seq,omitempty"`
	Seqs          []uint64        `json:"seqs,omitempty"`
	Index         int             `json:"index"`
	Type          string          `json:"type,omitempty"`
	Args          map[string]any  `json:"args,omitempty"`
	Preconditions []AuditCheck    `json:"preconditions,omitempty"`
	State         json.RawMessage `json:"state,omitempty"`
	Result        json.RawMessage `json:"result,omitempty"`
	Outcome       string          `json:"outcome,omitempty"`
	Error         string          `json:"error,omitempty"`
	DurationNS    int64           `json:"duration_ns,omitempty"`
}

// AuditPage is the answer of GET /v1/audit: the newest records that pass
// the filter, oldest first, how many records the trail holds and the hash
// of its last record (keep it elsewhere to detect a truncation).
type AuditPage struct {
	Records []AuditRecord `json:"records"`
	Count   int           `json:"count"`
	Head    string        `json:"head"`
}

// Audit reads the daemon's audit trail (GET /v1/audit, admin). A broken
// hash chain is an *Error with status 500 naming the first broken record.
func (c *Client) Audit(ctx context.Context, f AuditFilter) (*AuditPage, error) {
	q := url.Values{}
	for k, v := range map[string]string{"rule": f.Rule, "kind": f.Kind, "since": f.Since} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	path := "/v1/audit"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out AuditPage
	if err := c.call(ctx, http.MethodGet, path, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
