package client

import "time"

// SetDirectIdleMax sets how long the direct publish path keeps an idle
// connection, for the duration of a test.
func SetDirectIdleMax(d time.Duration) (restore func()) {
	old := directIdleMax.Swap(int64(d))
	return func() { directIdleMax.Store(old) }
}
