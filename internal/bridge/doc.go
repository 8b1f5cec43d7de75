// Package bridge turns the operations that the kernel boundary (fanotify on
// the backing tree) and the FUSE boundary (a loopback mount of it) report
// into one canonical event per logical operation, and pushes changes made
// directly on the backing tree into the FUSE cache.
//
// # Translation
//
// KernelTable, FUSETable and InvalTable are the translation table as data:
// fanotify mask bits and FUSE op codes to capture.Kind, and a kernel-only
// change back to FUSE cache invalidations. Translate turns one op into an
// event.Event without allocating (except to format a count of 100 or more).
//
// # Correlation
//
// An operation made through the mount reaches the backing file system as
// the daemon's own I/O, so the kernel reports it with the daemon's pid: a
// shadow. The bridge pairs a FUSE op and its shadow by operation class and
// name (kernel paths rewritten from the backing root to the mount point;
// a name a recent FUSE rename gave the file counts too), else inode, the
// oldest waiting op first, within Options.Window (default 50ms), in either
// arrival order, and publishes one event: the caller's context from FUSE,
// the inode from the kernel, Boundary fuse, Boundaries fuse,kernel.
//
// A FUSE op without a shadow within the window is published alone — unless
// the kernel boundary is stalled (silent since the op came, during a burst
// of FUSE ops), then it waits on, up to Options.MaxWindow. The kernel
// merges identical queued events, so one kernel op may stand for several
// FUSE ops of one kind on one file: a FUSE op left without a kernel op at
// its deadline, whose kind and name a kernel op was just merged into, is
// published with boundaries fuse,kernel too (Stats.Coalesced).
//
// A shadow without a FUSE op is not published (Options.PublishOrphans
// changes that): if a FUSE op on the same file came within two windows it
// is counted as absorbed (a side effect such as the chown the loopback
// makes after a create, or a link count change), else as an orphan. A
// shadow that comes after its FUSE op went out alone, or a FUSE op that
// comes after its shadow's window, means a boundary lags: the late one is
// still paired or absorbed, and the window grows to 1.5 times the lag, up
// to MaxWindow; it also grows when pairs match after more than half the
// window, and shrinks back as pairs match quickly (Stats.LateShadows,
// Stats.LateFUSE, Stats.Window).
//
// With FUSE passthrough the kernel sees a write through the mount from the
// writer itself and the FUSE boundary reports the write on close without a
// byte count; the bridge pairs the two into one fs.write with the writer's
// context. For this it holds a kernel write by another process up to one
// window in bridged mode (unless Options.NoPassthrough). A passthrough
// write that the kernel never saw and that repeats the previous one of the
// file (same inode and size, within two windows) changed no data — the FUSE
// boundary reports one again when a chmod, rename or unlink changes ctime
// between close and release — and is dropped.
//
// Any other kernel op by another process is a change made directly on the
// backing tree: it is published at once as a kernel-only event, and in
// bridged mode the bridge first asks the Invalidator to drop what the FUSE
// cache holds for it, from the bridge's own goroutine. After a kernel queue
// overflow, the kernel boundary's rescan reports again what FUSE ops
// changed while their shadows were lost; reports of paths a FUSE op
// published alone had touched are not published twice
// (Stats.RescanCovered).
//
// Without a mount (kernel-only mode, `semprop run --watch`) every kernel op
// is published at once with the watched path, the daemon's own included.
//
// A repeat filter of recent content hashes (a set-associative table of
// Options.DedupSize entries, default 4096, that allocates nothing) drops
// exact repeats (the same op delivered twice within the window): ops
// equal in boundary, kind, paths, inode, size, process, mode and written
// range. Two such ops are one event even if they were two system calls.
//
// # Delivery
//
// Sinks put ops on a bounded queue; Run correlates them on one goroutine
// and hands events to a second one that calls Publisher.PublishBatch with
// everything that accumulated meanwhile (at most Options.MaxBatch events
// per call). Neither is woken per op while the tree is busy: the
// correlator naps Options.BatchDelay (default 2ms) after a round that had
// ops, and the publisher naps Options.PublishDelay (default 20ms) after a
// batch, so a busy tree makes about one PublishBatch (and, with
// fsync=always, one journal fsync) per PublishDelay. See Bridge for
// backpressure and ordering guarantees.
//
// # Losses
//
// A boundary's loss report (fs.overflow, with the reason and count as the
// "reason" and "count" attributes) is published like any kernel op, and is
// never taken for a repeat by the content-hash filter. The bridge loses
// nothing silently itself: a batch the publisher refuses three times is
// given up (Stats.Lost), and an fs.overflow event with reason "publish",
// the number of events given up and the directory that holds all their
// subjects goes out at the head of the next batch, retried with it until
// it is published (Stats.LossReports). A rescan cannot recover those
// events (the tree matches what the kernel boundary already reported);
// the event tells consumers to resynchronise. An op of no known kind,
// which the publisher would refuse together with its whole batch, is
// replaced by an fs.overflow event with reason "invalid"
// (Stats.Invalid). Ops emitted after Run returned are dropped, counted
// (Stats.Closed) and logged once: stop the boundaries before the bridge.
package bridge
