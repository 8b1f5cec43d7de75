//go:build !linux

package procinfo

import (
	"context"
	"log/slog"
	"time"
)

// Start returns ErrUnavailable: the process connector is linux's.
func Start(ctx context.Context, log *slog.Logger) (*Cache, error) {
	return nil, ErrUnavailable
}

// Now returns a monotonic time in nanoseconds.
func Now() int64 { return time.Now().UnixNano() }
