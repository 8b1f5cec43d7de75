package analytics

import "time"

// The HTTP API of the analytics engine (registered by Engine.Register):
//
//	GET /v1/analytics/series?metric=events|bytes&by=type|comm|uid|dir&step=1s|1m|1h&from=T&to=T&k=N
//	GET /v1/analytics/top?by=path|comm|uid|dir|type&window=5m&k=10
//	GET /v1/analytics/insights?since=T&limit=N
//	GET /v1/analytics/live          (Server-Sent Events, one LiveFrame per "frame" event)
//	GET /v1/analytics/summary?window=5m   (Summary: distinct paths, write-size quantiles)
//	GET /v1/analytics/sessions      (SessionsResponse: session windows per process)
//
// T is RFC 3339 or Unix seconds; from defaults to to minus 1 h (1s: 5 min,
// 1h: 7 days), to to now. Every route needs a token with a subscribe
// scope; each token sees aggregates built only from the events it may see
// (see docs/analytics.md, "Tokens"). Errors are the API's JSON errors
// {"error": "...", "field": "..."} with status 400 for a bad parameter.

// SeriesResponse is the body of GET /v1/analytics/series: columnar, one
// timestamp column shared by every series (what uPlot takes as is).
type SeriesResponse struct {
	Metric string `json:"metric"` // "events" or "bytes"
	By     string `json:"by"`     // "type", "comm", "uid" or "dir"
	Step   string `json:"step"`   // "1s", "1m" or "1h"
	From   int64  `json:"from"`   // Unix seconds, first bucket start (inclusive, aligned to step)
	To     int64  `json:"to"`     // Unix seconds, end (exclusive, aligned to step)
	// Times are the bucket starts in Unix seconds: From, From+step, … < To.
	// Every bucket is listed; a bucket without events has 0 in every series.
	Times []int64 `json:"times"`
	// Series are the k keys with the largest total over the range (default
	// k 10, at most 100), largest first; the rest is summed into one
	// series with key "(other)" when there is any.
	Series []Series `json:"series"`
	// Partial is true when part of the range lies before the oldest
	// retained rollup of this step (its buckets read 0).
	Partial bool `json:"partial,omitempty"`
}

// Series is one key's values, aligned with SeriesResponse.Times.
type Series struct {
	Key    string  `json:"key"`
	Values []int64 `json:"values"`
}

// TopResponse is the body of GET /v1/analytics/top.
type TopResponse struct {
	By     string `json:"by"`     // "path", "comm", "uid", "dir" or "type"
	Window string `json:"window"` // the window, as given (default "5m")
	// Total is the number of events (and bytes) in the window, over every
	// key: the denominator of a share.
	Total      int64     `json:"total"`
	TotalBytes int64     `json:"total_bytes"`
	Items      []TopItem `json:"items"`
	// Approximate is true when the counts come from the space-saving
	// sketch rather than exact counters (by=path over long windows); then
	// each item's Error bounds how much its Count may overstate.
	Approximate bool `json:"approximate,omitempty"`
}

// TopItem is one key of a top list, busiest first.
type TopItem struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
	Bytes int64  `json:"bytes"`
	// Error is the space-saving overestimate bound of Count (0 when exact).
	Error int64 `json:"error,omitempty"`
}

// Insight is one finding of the anomaly detector. It is also published
// as a semprop.insight.<kind> event: Subject the path (dir) it concerns
// or empty, Data this struct as JSON.
type Insight struct {
	Kind        string    `json:"kind"` // "spike", "drop", "new-writer", "unusual-hour"
	Time        time.Time `json:"time"` // start of the rollup bucket that fired
	By          string    `json:"by"`   // the dimension: "type", "comm", "dir", "comm@dir"
	Key         string    `json:"key"`  // the key within it, e.g. "rsync@/srv/data"
	Value       float64   `json:"value"`
	Expected    float64   `json:"expected"`      // the baseline
	Low         float64   `json:"low"`           // the usual range, low end
	High        float64   `json:"high"`          // the usual range, high end
	Score       float64   `json:"score"`         // how unusual: z-score-like, >= threshold when published
	Explanation string    `json:"explanation"`   // one human sentence
	Seq         uint64    `json:"seq,omitempty"` // seq of the published event (0 until published)
}

// InsightsResponse is the body of GET /v1/analytics/insights: the most
// recent insights the caller may see, newest first.
type InsightsResponse struct {
	Items []Insight `json:"items"`
}

// LiveFrame is one frame of GET /v1/analytics/live ("event: frame",
// "data: " this struct as JSON on one line). The server sends a frame at
// most every 50 ms and only when something changed (else an SSE comment
// as a heartbeat every 15 s); a burst of any size is coalesced into the
// next frame, so a slow page never falls behind more than one frame.
type LiveFrame struct {
	Time int64  `json:"time"` // server clock, Unix milliseconds, when the frame was made
	Seq  uint64 `json:"seq"`  // last durable seq the aggregates include
	// EventTime is the event time (Unix ms) of the last event included:
	// Time - EventTime is the end-to-end lag of the frame.
	EventTime int64 `json:"event_time"`
	// RateWindow is the span (ms) over which Rates and BytesPerSec are
	// averaged: the last complete seconds (5 s).
	RateWindow int64              `json:"rate_window"`
	Rates      map[string]float64 `json:"rates"` // events/s by type
	Rate       float64            `json:"rate"`  // events/s, all types
	// BytesPerSec are bytes written per second; BytesTotal since start.
	BytesPerSec float64 `json:"bytes_per_sec"`
	BytesTotal  int64   `json:"bytes_total"`
	// Second is the last complete second: its start (Unix s) and the counts
	// by type, for a chart that appends one point a second.
	Second       int64            `json:"second"`
	SecondCounts map[string]int64 `json:"second_counts"`
	// Top holds the busiest keys of the last minute: "path", "comm",
	// "uid" and "dir", 10 each.
	Top map[string][]TopItem `json:"top"`
	// Insights are the 20 most recent insights the caller may see.
	Insights []Insight `json:"insights"`
}

// SessionsResponse is the body of GET /v1/analytics/sessions: the recent
// (at most 256) and open session windows per process, latest end first.
type SessionsResponse struct {
	Items []Session `json:"items"`
}
