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
	daemonGC(log)
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

// daemonGCPercent is the garbage collector's target for the daemon (unless GOGC
// is set; bench/ runs the daemon's components with it too). Its
// live heap is small (about 10 MB idle, without a mount's file index)
// while everything it does allocates: an event per operation through a
// mount and its journal record, the events of every HTTP publish. At the
// default of 100 a collection comes every few MB of allocation: a copy of
// GOROOT/src into a mount ran 23 collections, each of which slows the FUSE
// handlers on the caller's critical path (write barriers, assists,
// stop-the-world phases), and HTTP ingest of batches of 1,000 events spent
// a sixth of its CPU in the collector's workers, sweeping and returning to
// the kernel memory that the next batches faulted in again. At 400 the
// heap grows to about five times the live heap before a collection instead
// of twice: the copy runs 4 collections, and ingest takes a fifth less CPU
// per event (BenchmarkIngestSDK in internal/api, GOGC=100 against 400 on 2
// CPUs: 2.18 against 1.70 µs per event, 0.81M against 1.13M events/s).
const daemonGCPercent = 400

// daemonGC sets daemonGCPercent unless GOGC is set in the environment,
// and reports whether it did.
func daemonGC(log *slog.Logger) bool {
	if os.Getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(daemonGCPercent)
	log.Info("garbage collector target raised (GOGC unset)", "gogc", daemonGCPercent)
	return true
}
