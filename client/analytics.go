package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// SeriesQuery selects rollups of the analytics history
// (GET /v1/analytics/series). Zero fields take the server's defaults.
type SeriesQuery struct {
	Metric string    // "events" (default) or "bytes"
	By     string    // "type" (default), "comm", "uid" or "dir"
	Step   string    // "1s", "1m" (default) or "1h"
	From   time.Time // default: To minus 5 min (1s), 1 h (1m) or 7 days (1h)
	To     time.Time // default: now
	K      int       // the keys with the largest totals (default 10, at most 100)
}

// SeriesResult is a set of series sharing one time column.
type SeriesResult struct {
	Metric  string   `json:"metric"`
	By      string   `json:"by"`
	Step    string   `json:"step"`
	From    int64    `json:"from"`  // Unix seconds
	To      int64    `json:"to"`    // Unix seconds, exclusive
	Times   []int64  `json:"times"` // bucket starts, Unix seconds
	Series  []Series `json:"series"`
	Partial bool     `json:"partial,omitempty"`
}

// Series is one key's values, aligned with SeriesResult.Times. The key
// "(other)" sums the keys beyond K.
type Series struct {
	Key    string  `json:"key"`
	Values []int64 `json:"values"`
}

// TopQuery selects a top list (GET /v1/analytics/top).
type TopQuery struct {
	By     string        // "path" (default), "comm", "uid", "dir" or "type"
	Window time.Duration // default 5m, 1s to 1h
	K      int           // default 10, at most 100
}

// TopList is the busiest keys of a sliding window.
type TopList struct {
	By          string    `json:"by"`
	Window      string    `json:"window"`
	Total       int64     `json:"total"`
	TotalBytes  int64     `json:"total_bytes"`
	Items       []TopItem `json:"items"`
	Approximate bool      `json:"approximate,omitempty"`
}

// TopItem is one key of a top list. Error bounds how much Count may
// overstate (paths only; 0 when exact).
type TopItem struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
	Bytes int64  `json:"bytes"`
	Error int64  `json:"error,omitempty"`
}

// Series returns rollups of the analytics history. Safe for concurrent use.
func (c *Client) Series(ctx context.Context, q SeriesQuery) (SeriesResult, error) {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("metric", q.Metric)
	set("by", q.By)
	set("step", q.Step)
	if !q.From.IsZero() {
		v.Set("from", q.From.UTC().Format(time.RFC3339))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.UTC().Format(time.RFC3339))
	}
	if q.K > 0 {
		v.Set("k", strconv.Itoa(q.K))
	}
	var out SeriesResult
	err := c.getAnalytics(ctx, "/v1/analytics/series?"+v.Encode(), &out)
	return out, err
}

// Top returns the busiest keys of a sliding window. Safe for concurrent use.
func (c *Client) Top(ctx context.Context, q TopQuery) (TopList, error) {
	v := url.Values{}
	if q.By != "" {
		v.Set("by", q.By)
	}
	if q.Window > 0 {
		v.Set("window", q.Window.String())
	}
	if q.K > 0 {
		v.Set("k", strconv.Itoa(q.K))
	}
	var out TopList
	err := c.getAnalytics(ctx, "/v1/analytics/top?"+v.Encode(), &out)
	return out, err
}

func (c *Client) getAnalytics(ctx context.Context, path string, out any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}
