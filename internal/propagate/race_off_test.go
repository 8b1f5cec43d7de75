//go:build !race

package propagate

// raceDetector says the tests run with the race detector, whose shadow
// memory takes page faults of its own.
const raceDetector = false
