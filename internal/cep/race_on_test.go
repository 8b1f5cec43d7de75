//go:build race

package cep

// raceEnabled makes the long randomized tests shorter under the race
// detector, which slows them tenfold.
const raceEnabled = true
