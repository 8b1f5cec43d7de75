// Package analytics is semprop's analytics engine: operators fed
// synchronously from the durable event stream (windows, aggregates per type,
// directory, process and user, distinct counts, top-K, quantiles), rollups
// at 1 s, 1 min and 1 h kept in an append-only store under the data
// directory and rebuilt from the journal when missing or behind, anomaly
// insights published as semprop.insight.* events, and the HTTP API behind
// the dashboard and `semprop top`.
//
// Analytics is derived data: the engine reads only durable events (a crash
// never erases an event it counted) and its state can always be rebuilt
// from the journal. An engine without token views reads the journal's
// binary records (a RecordSource, such as *propagate.Reader) and decodes
// only the fields it counts; panes the watermark passes close after the
// batch of events made durable together. See docs/analytics.md.
package analytics
