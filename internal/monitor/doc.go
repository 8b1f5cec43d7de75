// Package monitor watches semprop itself: health checks per component,
// trends and predictions over its metrics, and alerting without noise.
//
// Health is a registry of named checks, one or more per component
// (Checks builds them from the components' Stats); each returns a Check
// with a status (ok, degraded, failing), a reason and the measurements
// behind it. GET /v1/health lists them and Health.Ready, derived from the
// checks of the critical components, feeds /readyz.
//
// A Monitor samples the daemon's prometheus.Gatherer into a Store every
// interval and evaluates alert rules written in a small PromQL-like
// language (ParseExpr): selectors, rate, increase, deriv,
// predict_linear, predict_seasonal (additive Holt-Winters), time_to,
// absent, ratio, histogram_quantile, aggregations, and analytics() over
// the event stream's rollups through a SeriesSource. Rules have for,
// keep_firing_for, a recovery expression (hysteresis), labels and
// templated annotations. Alerts pass through a dispatcher like
// Alertmanager's (group_by, group_wait, group_interval, repeat_interval,
// deduplication by fingerprint, inhibition, silences) and are delivered
// as semprop.alert.firing|resolved events, webhooks, and to Alertmanagers
// in their API v2 format.
//
// Concurrency: Health, Checks' functions (serialized per check by
// Health), Monitor and Store are safe for concurrent use. A Monitor's
// evaluation and dispatch run under one lock; deliveries run on one
// goroutine owned by Run, off that lock, from a bounded queue (a full
// queue drops and counts).
package monitor
