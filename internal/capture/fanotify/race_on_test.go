//go:build race

package fanotify

// raceEnabled: the race detector slows every goroutine several times,
// the process connector's listener included.
const raceEnabled = true
