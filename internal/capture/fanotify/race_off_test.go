//go:build !race

package fanotify

const raceEnabled = false
