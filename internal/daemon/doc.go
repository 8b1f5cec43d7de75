// Package daemon is the semprop process as one object: a Config parsed and
// validated once (FromConfig), and a Daemon that starts its components in
// a fixed order and stops them in the reverse one.
//
// The order is: the HTTP listener (answering 503 "starting" until the API
// is ready, so a port conflict fails at once), the journal, the manager
// (sequencing locally or through the Raft cluster), the rule engine (when
// rule files are configured), one capture tree per --watch and --mount
// ({bridge, kernel watcher, FUSE mount}), and the API.
// A component that fails to start makes Run stop the ones already started,
// in reverse, and remove what this start created on disk (the data
// directory, a mount point); a component that fails while running stops
// the daemon the same way. Adding a component is one field on Daemon and
// one entry in Daemon.steps.
//
// Process-wide settings (GOMAXPROCS for a daemon that captures, the
// garbage collector's target, the file-descriptor limit) are decided in
// one place, tuneProcess, and logged. Components get the daemon's
// logger; none of them sets a global one.
package daemon
