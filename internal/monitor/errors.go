package monitor

import "errors"

// Errors of the monitor package.
var (
	// ErrExpr reports an alert expression that does not parse or check.
	ErrExpr = errors.New("monitor: bad expression")
	// ErrMatcher reports a label matcher that does not parse.
	ErrMatcher = errors.New("monitor: bad matcher")
	// ErrConfig reports an invalid monitoring configuration or rule file.
	ErrConfig = errors.New("monitor: bad config")
	// ErrNoSilence reports a silence id that is not known.
	ErrNoSilence = errors.New("monitor: no such silence")
	// ErrNotReady is wrapped by Health.Ready when a check is failing.
	ErrNotReady = errors.New("monitor: not ready")
	// ErrDelivery reports a notification a sink could not deliver.
	ErrDelivery = errors.New("monitor: delivery failed")
)
