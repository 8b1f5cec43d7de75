package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

// Rule describes one rule of the daemon's rule engine and its counters.
type Rule struct {
	Name     string           `json:"name"`
	Kind     string           `json:"kind"`
	Severity string           `json:"severity"`
	Tags     []string         `json:"tags,omitempty"`
	Enabled  bool             `json:"enabled"`
	File     string           `json:"file"`
	Line     int              `json:"line"`
	Counters map[string]int64 `json:"counters"`
}

// RuleEngineStats are the rule engine's own counters.
type RuleEngineStats struct {
	Cursor    uint64 `json:"cursor"`
	Published uint64 `json:"published"`
	Skipped   uint64 `json:"skipped"`
	Late      uint64 `json:"late"`
	Gaps      uint64 `json:"gaps"`
}

// Rules lists the daemon's rules with their counters (admin). A daemon run
// without rule files answers 404.
func (c *Client) Rules(ctx context.Context) ([]Rule, RuleEngineStats, error) {
	var out struct {
		Rules []Rule          `json:"rules"`
		Stats RuleEngineStats `json:"stats"`
	}
	err := c.call(ctx, http.MethodGet, "/v1/rules", &out)
	return out.Rules, out.Stats, err
}

// ReloadRules makes the daemon load its rule files again (admin); on an
// error the running rules stay.
func (c *Client) ReloadRules(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, "/v1/rules/reload", nil)
}

// EnableRule enables or disables one rule (admin).
func (c *Client) EnableRule(ctx context.Context, name string, on bool) error {
	op := "disable"
	if on {
		op = "enable"
	}
	return c.call(ctx, http.MethodPost, "/v1/rules/"+url.PathEscape(name)+"/"+op, nil)
}

// call sends a request without a body and decodes the answer into out
// (when not nil).
func (c *Client) call(ctx context.Context, method, path string, out any) error {
	var ctype string
	var body []byte
	if method != http.MethodGet {
		ctype, body = "application/json", []byte("{}")
	}
	resp, err := c.do(ctx, method, path, body, ctype, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
