//go:build !unix

package capture

import "log/slog"

// RaiseFileLimit does nothing where there is no RLIMIT_NOFILE; it returns
// zeros.
func RaiseFileLimit(log *slog.Logger) (before, after uint64, err error) { return 0, 0, nil }
