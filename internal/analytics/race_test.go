//go:build race

package analytics

// raceEnabled: the replays of a week and of 600,000 events run in one
// goroutine; under the race detector they take minutes and find nothing.
const raceEnabled = true
