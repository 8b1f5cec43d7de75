package fanotify

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/semprop/semprop/internal/capture"
	"github.com/semprop/semprop/internal/capture/procinfo"
)

// Errors returned by New and Run.
var (
	ErrUnsupported = errors.New("fanotify: kernel capture needs linux")
	ErrNoRoot      = errors.New("fanotify: root must be an absolute path to a directory")
	ErrNoSink      = errors.New("fanotify: a sink is required")
	ErrClosed      = errors.New("fanotify: watcher closed")
)

// Options configures a Watcher.
type Options struct {
	Root   string       // absolute directory to watch, recursively
	Sink   capture.Sink // receives every op; called from the read loop only
	Logger *slog.Logger // nil: slog.Default()

	// RescanBackoff is the minimum gap between two overflow rescans. It
	// doubles (up to 30s) while overflows repeat within the gap and returns
	// to its base after a quiet period. Default 1s.
	RescanBackoff time.Duration

	// ForceInotify uses the inotify fallback even where fanotify is
	// permitted (for tests and comparison).
	ForceInotify bool

	// UnlimitedQueue asks for FAN_UNLIMITED_QUEUE. By default the group has
	// the kernel's bounded queue (16384 events), so an overflow is possible
	// and is handled by a rescan.
	UnlimitedQueue bool

	// BatchDelay is how long the reader waits, after a read that found
	// events, before it reads again, so that a busy queue is read in
	// batches. A reader blocked in poll(2) is woken by every event the kernel
	// queues — inside the system call of the process that caused it, which
	// on a virtual machine costs an inter-processor interrupt per event —
	// and gets one record per read; after a delay it gets hundreds, and the
	// kernel merges repeated events (writes to one file) meanwhile. The
	// reader blocks in poll only once a delay passed with nothing queued,
	// so an idle watcher costs nothing. This is the latency added to kernel
	// events under load. Default 2ms (each nap costs a timer and a thread
	// wake-up; 2ms halved them against 1ms for a measurable share of a
	// FUSE mount's CPU); negative: no delay (one wake-up per event).
	BatchDelay time.Duration

	// Shadows says that this process serves a FUSE mount of Root, so its
	// own records are shadows of the mount's operations, which the bridge
	// merges into the FUSE events: the watcher spends less on them (see
	// doc.go, "Merged records"). Leave it off when the process's own
	// changes are events in their own right.
	Shadows bool

	// Procs, if set, is the process identity cache fed by the kernel's
	// process connector (procinfo.Start), shared by the boundaries of a
	// process: comm, exe, uid and gid then survive processes that exit
	// before their records are read (see doc.go, "Process context").
	// Nil: they are read from /proc when the record is processed.
	Procs *procinfo.Cache
}

const (
	defaultRescanBackoff = time.Second
	defaultBatchDelay    = 2 * time.Millisecond
	maxRescanBackoff     = 30 * time.Second
)

// Stats are the watcher's counters, read with Watcher.Stats.
type Stats struct {
	Mode string // "fanotify" or "inotify"

	EventsRead  uint64            // kernel records read (fanotify events or inotify events)
	Reads       uint64            // read(2) calls that returned data
	Ops         map[string]uint64 // ops emitted, by event type ("fs.create", …)
	OpsTotal    uint64
	Overflows   uint64            // queue overflows seen (FAN_Q_OVERFLOW / IN_Q_OVERFLOW)
	Losses      map[string]uint64 // fs.overflow ops emitted, by reason ("queue", "emfile", …; see capture.Reason*)
	LostRecords uint64            // kernel records known lost to errors (reported in fs.overflow ops; queue overflows do not say how many)
	Rescans     uint64            // rescans run
	RescanFound uint64            // changes the rescans found (ops with Rescan set)
	Drained     uint64            // bytes read from the kernel queue during rescans, processed after them

	HandleHits   uint64 // directory handle → path cache hits
	HandleMisses uint64 // … misses (open_by_handle_at + readlink)
	HandleStale  uint64 // handles that could no longer be opened (deleted directory)
	HandleErrors uint64 // handles that could not be resolved for another reason (no descriptor, no memory, …): their records are lost and reported
	ReserveUsed  uint64 // opens that succeeded only with the reader's spare descriptor (the process had none left)
	RescanErrors uint64 // parts of the tree a rescan could not read (another rescan follows)
	CacheResets  uint64 // the handle cache outgrew its bound and was cleared
	ProcHits     uint64 // pid → comm/exe cache hits (start time verified); with Options.Procs: records with an identity
	ProcMisses   uint64 // … misses and pid reuse refreshes; with Options.Procs: records with the pid only

	DroppedOutside uint64 // events on the file system but outside Root
	Unresolved     uint64 // events whose directory could no longer be resolved (deleted since; dropped)
	Nameless       uint64 // records with no directory and name (link-count ATTRIB of link/unlink, writes to unlinked files): nothing to report
	Suppressed     uint64 // ops dropped as duplicates of what the index already holds (after a rescan or a directory scan)
	ParseErrors    uint64 // malformed buffers or records
	Watches        uint64 // inotify: directories watched
}

// counters are the live values behind Stats. The reader goroutine writes
// them; Stats reads them from any goroutine.
type counters struct {
	eventsRead, reads, opsTotal       atomic.Uint64
	ops                               [16]atomic.Uint64 // by capture.Kind
	overflows, rescans, rescanFound   atomic.Uint64
	drained                           atomic.Uint64
	handleHits, handleMisses, stale   atomic.Uint64
	cacheResets, procHits, procMisses atomic.Uint64
	outside, unresolved, suppressed   atomic.Uint64
	nameless                          atomic.Uint64
	parseErrors, watches              atomic.Uint64
	lostRecords, handleErrors         atomic.Uint64
	reserveUsed, rescanErrors         atomic.Uint64
	// lstats counts the lstat calls of apply and rename (not in Stats: a
	// cost, measured by the tests).
	lstats, listings atomic.Uint64

	lossMu sync.Mutex
	losses map[string]uint64 // by reason
}

// addLoss counts an fs.overflow op of reason.
func (c *counters) addLoss(reason string) {
	c.lossMu.Lock()
	if c.losses == nil {
		c.losses = make(map[string]uint64)
	}
	c.losses[reason]++
	c.lossMu.Unlock()
}

func (c *counters) snapshot(mode string) Stats {
	s := Stats{
		Mode:           mode,
		EventsRead:     c.eventsRead.Load(),
		Reads:          c.reads.Load(),
		Ops:            make(map[string]uint64),
		OpsTotal:       c.opsTotal.Load(),
		Overflows:      c.overflows.Load(),
		Rescans:        c.rescans.Load(),
		RescanFound:    c.rescanFound.Load(),
		Drained:        c.drained.Load(),
		HandleHits:     c.handleHits.Load(),
		HandleMisses:   c.handleMisses.Load(),
		HandleStale:    c.stale.Load(),
		CacheResets:    c.cacheResets.Load(),
		ProcHits:       c.procHits.Load(),
		ProcMisses:     c.procMisses.Load(),
		DroppedOutside: c.outside.Load(),
		Unresolved:     c.unresolved.Load(),
		Nameless:       c.nameless.Load(),
		Suppressed:     c.suppressed.Load(),
		ParseErrors:    c.parseErrors.Load(),
		Watches:        c.watches.Load(),
		LostRecords:    c.lostRecords.Load(),
		HandleErrors:   c.handleErrors.Load(),
		ReserveUsed:    c.reserveUsed.Load(),
		RescanErrors:   c.rescanErrors.Load(),
		Losses:         make(map[string]uint64),
	}
	c.lossMu.Lock()
	for r, n := range c.losses {
		s.Losses[r] = n
	}
	c.lossMu.Unlock()
	for k := range c.ops {
		if n := c.ops[k].Load(); n > 0 {
			s.Ops[capture.Kind(k).String()] = n
		}
	}
	return s
}
