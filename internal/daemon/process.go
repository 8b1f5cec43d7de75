package daemon

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/semprop/semprop/internal/capture"
)

// tuneProcess decides the process-wide settings, in this one place, and
// logs each one it changes.
func tuneProcess(cfg *Config, log *slog.Logger) {
	// Capture must never depend on descriptors that clients can take:
	// the soft limit goes up to the hard one (capture.RaiseFileLimit logs
	// both), and the kernel watcher keeps a spare of its own.
	if _, _, err := capture.RaiseFileLimit(log); err != nil {
		log.Warn("cannot raise the file descriptor limit", "err", err)
	}
	if len(cfg.Mounts)+len(cfg.Watches) > 0 {
		// Spare Ps: FUSE handlers, and the process connector's listener,
		// must not wait for a P (a process that lives a millisecond is
		// gone if its exec is read late).
		captureProcs(log)
	}
	if len(cfg.Mounts) > 0 {
		fuseGC(log)
	}
}

// captureProcs gives a daemon that captures more Ps than CPUs
// (4 per CPU, unless GOMAXPROCS is set in the environment). A FUSE server's
// goroutines spend their lives in blocking reads of /dev/fuse and in the
// backing file system's syscalls; each needs a P again the moment its
// syscall returns, and with one P per CPU it often finds them all held —
// by the capture pipeline (kernel reader, bridge, journal) or by a
// goroutine still counted in a syscall — and waits for the runtime to hand
// one over, on the critical path of the caller's operation. With spare Ps
// the operating system's scheduler decides instead. Measured on 2 CPUs
// (copy of GOROOT/src through the mount, 13 alternating pairs): 10% less
// wall time (bench/README.md).
func captureProcs(log *slog.Logger) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	if n := 4 * runtime.NumCPU(); runtime.GOMAXPROCS(0) < n {
		runtime.GOMAXPROCS(n)
		log.Info("capture: more Ps than CPUs (FUSE handlers, the process connector)", "gomaxprocs", n)
	}
}

// fuseGCPercent is the garbage collector's target for a daemon that serves
// FUSE mounts. Every operation through a mount allocates in the capture
// pipeline (an op per boundary, an event, its journal record), while the
// live heap stays small (about 10 MB): at the default of 100 a copy of
// GOROOT/src into the mount ran 23 collections, each of which slows the
// FUSE handlers on the caller's critical path (write barriers, assists,
// stop-the-world phases). At 400 the heap grows to about five times the
// live heap before a collection instead of twice, some 50 MB, and the copy
// runs 4.
const fuseGCPercent = 400

// fuseGC sets fuseGCPercent unless GOGC is set in the environment.
func fuseGC(log *slog.Logger) {
	if os.Getenv("GOGC") != "" {
		return
	}
	debug.SetGCPercent(fuseGCPercent)
	log.Info("FUSE: garbage collector target raised for the mount's server", "gogc", fuseGCPercent)
}
