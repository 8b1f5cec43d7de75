//go:build unix

package capture

import (
	"fmt"
	"log/slog"
	"syscall"
)

// lowFileLimit is the descriptor limit below which RaiseFileLimit warns:
// every client connection, journal segment and watched directory of the
// daemon shares it.
const lowFileLimit = 8192

// RaiseFileLimit raises this process's soft limit on open file descriptors
// (RLIMIT_NOFILE) to its hard limit and logs both, with a warning when the
// result is below 8192. It returns the soft limit before and after. The Go
// runtime already raises the soft limit when the process starts, so before and
// after are usually equal; calling it makes the limit explicit in the log and
// holds even where that did not happen. It is safe for concurrent use but
// meant for start-up, before descriptors are handed out.
func RaiseFileLimit(log *slog.Logger) (before, after uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, fmt.Errorf("capture: getrlimit nofile: %w", err)
	}
	before = uint64(lim.Cur)
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			return before, before, fmt.Errorf("capture: raise nofile soft limit %d to %d: %w", lim.Cur, lim.Max, err)
		}
		lim = want
	}
	after = uint64(lim.Cur)
	if log != nil {
		log.Info("file descriptor limit", "soft", after, "hard", uint64(lim.Max), "was", before)
		if after < lowFileLimit {
			log.Warn("file descriptor limit is low: client connections can use up what capture needs; raise the hard limit (ulimit -Hn, LimitNOFILE=)",
				"limit", after, "want_at_least", lowFileLimit)
		}
	}
	return before, after, nil
}
