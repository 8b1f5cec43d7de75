// Package fanotify is semprop's kernel boundary: it watches a directory tree
// on its backing file system with fanotify and reports every logical
// operation as a capture.Op (Boundary event.BoundaryKernel) to a
// capture.Sink. Where fanotify is not permitted it falls back to inotify.
// The bridge turns the ops into events and correlates them with the FUSE
// boundary; this package publishes nothing itself.
//
// # Concurrency
//
// Watcher.Run reads and emits on the calling goroutine: the sink is only
// called from there, one op at a time, in order. Close, Stats, Mode, Pause
// and Resume may be called from any goroutine. Everything else (handle
// cache, process cache, index) belongs to the reader and needs no lock.
//
// # Kernel interface (linux 6.18)
//
// The group is FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME_TARGET (that is
// FAN_REPORT_DFID_NAME | FAN_REPORT_FID | FAN_REPORT_TARGET_FID) with
// FAN_CLOEXEC | FAN_NONBLOCK, and the default bounded queue (16384 events)
// unless Options.UnlimitedQueue. One FAN_MARK_FILESYSTEM mark on Root's file
// system asks for FAN_CREATE, FAN_DELETE, FAN_MODIFY, FAN_CLOSE_WRITE,
// FAN_ATTRIB and FAN_RENAME, with FAN_ONDIR. This kernel accepts that whole
// combination, FAN_CLOSE_WRITE included (FID reporting excludes only
// permission events); FAN_EVENT_ON_CHILD is accepted too but changes nothing
// for a filesystem mark, which sees every inode (checked: the tests pass the
// same without it). Not requested:
// FAN_MOVED_FROM/FAN_MOVED_TO (FAN_RENAME carries both names in one
// record), FAN_DELETE_SELF/FAN_MOVE_SELF (the target FID of the dirent
// records already identifies the object, so they would only double the
// queue load), FAN_REPORT_PIDFD (see "Process context").
//
// A record holds the event metadata and info records: DFID_NAME (the
// parent directory's file handle and the entry name, "." for a directory's
// own events), FID (the object), OLD_DFID_NAME and NEW_DFID_NAME for
// FAN_RENAME; PIDFD, ERROR, RANGE, MNT and unknown types are parsed or
// skipped by length. The parser (parse.go) is bounds-checked, allocation
// free and fuzzed (FuzzParse): a malformed info record spoils only its
// event; a malformed event length ends the buffer (counted in
// Stats.ParseErrors).
//
// # Paths
//
// A directory handle is resolved with open_by_handle_at(O_PATH) on a
// descriptor of Root and readlink of /proc/self/fd/N, then cached (handle →
// path, and whether that path is inside Root). The cache follows the tree:
// on a directory rename the renamed directory and every cached directory
// below it get the new prefix. A directory created inside Root is cached
// from its mkdir record (its target FID and path), so that records of its
// children still resolve when it is already gone by the time they are read.
// An rmdir evicts the directory's handle 1024 rmdirs later (records of its
// children may still follow, and a deleted directory's handle cannot be
// opened; handles carry a generation, so a stale entry never matches a new
// directory). The
// mark covers the whole file system, which on a shared root file system
// means every unrelated write on the machine: such an event costs a parse,
// one map lookup of its directory handle (the "outside" verdict is cached
// too) and a counter (Stats.DroppedOutside), with no allocation. The cache
// is bounded (65536 directories) and simply cleared when full.
//
// Paths are resolved when a record is processed, not when the operation
// happened: if a directory is renamed between an operation in it and the
// reader's processing of that operation, the op carries the later name.
// Root is resolved once (symbolic links evaluated); renaming Root or one of
// its ancestors while watching is not followed. Records with no name (the
// link-count ATTRIB of link/unlink, a write to an unlinked open file) are
// dropped and counted in Stats.Nameless; records in a directory that was
// deleted before it was ever cached (open_by_handle_at says ESTALE or
// ENOENT, or the path ends in " (deleted)") in Stats.Unresolved: they
// describe objects that no longer exist. A handle that cannot be resolved
// for any other reason (no descriptor, no memory, an I/O error) is a loss,
// reported as below ("Losses").
//
// # Descriptors
//
// The watcher holds its descriptors for good from New on: the fanotify
// group (or inotify instance), Root's directory (the mount descriptor for
// open_by_handle_at) and an eventfd. The group reports file identifiers
// (FID mode), so reading it creates no event descriptors, and PIDFD
// reporting is not requested. The reader opens one descriptor at a time for
// a moment: open_by_handle_at and a readlink per uncached directory, a
// directory of a rescan's walk, /proc/PID/stat and status. For these it
// keeps one spare descriptor (a duplicate of its eventfd): when an open
// fails with EMFILE or ENFILE (client connections used up the process's
// limit), the spare is closed and the open retried (Stats.ReserveUsed);
// when that descriptor is done with, dup3 turns its slot back into the
// spare, which needs no free slot. Another thread may take the freed slot
// between the close and the retried open; then the open fails and the
// record is a loss, reported.
//
// # Process context
//
// The record's pid (the thread group id) is always set (Known has
// event.HasPID), also when it is the daemon's own pid: the bridge uses
// PID == os.Getpid() to spot the backing-tree shadows of FUSE operations.
// Comm, Exe, UID and GID (effective ids) come from the shared process
// identity cache when Options.Procs is set (package procinfo: learnt from
// the kernel's process connector while the process was alive, so a process
// that exited before its record was read keeps them). The reader asks it
// for the window the record was queued in — after the last read that found
// the queue empty began, before the record's read returned — and gets the
// identity the pid had then, or none when the pid changed hands within the
// window (never another process's). Without Options.Procs they are read
// from /proc/PID/{stat,exe,status} when the record is processed and cached
// by pid; a cached entry is re-validated by the process start time (field
// 22 of /proc/PID/stat) when it is older than 50ms, so a reused pid is
// noticed, but an exec(2) is not, and a process that exited before its
// record was read leaves Comm, Exe, UID and GID unknown. Either way PID is
// set.
//
// # Operations
//
//	FAN_CREATE            fs.create (fs.mkdir with FAN_ONDIR; fs.symlink when
//	                      the new name is a symbolic link, with Target; fs.link
//	                      when it is a regular file with more than one link
//	                      and another indexed path has its inode, OldPath)
//	FAN_DELETE            fs.delete (fs.rmdir)
//	FAN_ATTRIB            fs.attrib
//	FAN_RENAME            fs.rename OldPath → Path (IsDir); a move into Root is
//	                      fs.create/fs.mkdir, out of Root fs.delete/fs.rmdir
//	FAN_MODIFY            remembered per object ("dirty"), no op of its own
//	FAN_CLOSE_WRITE       fs.write if the object was modified since its last
//	                      close-write (one per open-write-close), else nothing
//	FAN_Q_OVERFLOW        fs.overflow, then a rescan (below)
//
// Inode and Mode come from lstat of the path when the record is processed;
// a write carries the file's Size then (Bytes and the written range are not
// known at this boundary). A name known to be free is not stat'ed: a lone
// FAN_DELETE record is about an object that left its name (what is there
// now came after, and a later record reports it), and when one read batch
// holds more than four records needing a name check in one directory, the
// directory is listed once (opened by its handle, two getdents) and the
// names it does not hold are taken to be free — in a storm of
// create/write/close/delete cycles read as a backlog, that replaces an
// lstat per record with four system calls per batch.
//
// # Merged records
//
// The kernel merges a new event into a queued record of the same object
// (same directory handle, name, target handle and pid) by OR-ing the masks,
// so one record can stand for several operations whose order and count are
// lost. The watcher splits a record into ops as follows, deciding "before"
// from its index (was the path known?) and "after" by lstat and, for a
// record with FAN_CREATE or FAN_DELETE, name_to_handle_at(AT_HANDLE_FID)
// compared with the record's target handle (is this very object still at
// the name, rather than a successor?):
//
//	CREATE|DELETE, not before, not after   create, [write], [attrib], delete
//	CREATE|DELETE, before, after            delete, create, [write], [attrib]
//	CREATE|DELETE, not before, after        create, delete, create, [write], [attrib]
//	CREATE|DELETE, before, not after        delete, create, [write], [attrib], delete
//	CREATE                                  create, [write], [attrib]
//	DELETE                                  [write], [attrib], delete
//	otherwise                               [write], [attrib]
//
// where write is emitted when CLOSE_WRITE is set and the object was
// modified (MODIFY in this record or an earlier one), and attrib when ATTRIB
// is set. With Options.Shadows, a lone CREATE of this process's own (the
// shadow of a create through the FUSE mount, which reports the kind and
// context itself) is taken to be at its name still, without the
// name_to_handle_at. So a storm's create-write-close-delete cycle that the
// kernel folded into one record still yields create, write, delete. What
// merging loses for good: two open-write-close cycles of one file folded
// into one record give one fs.write; and a merged record is reported where its first
// event was queued, so ops of different objects can come out of order. One
// case is repaired: the rmdir of a merged mkdir+rmdir record is held back
// until a record about something outside that directory (or the end of the
// read batch), so the ops of its children, queued after it, come before it.
//
// # Overflow and rescan
//
// The watcher keeps an index of the tree (path → inode, size, mtime,
// is-dir), built by one walk in New and kept up to date from the records.
// On FAN_Q_OVERFLOW (or IN_Q_OVERFLOW) it emits fs.overflow (Reason
// "queue"), then walks Root
// and emits what differs from the index as ops with Rescan set: fs.create
// (plus fs.write when the file is not empty), fs.mkdir, fs.symlink for new
// paths (parents first); fs.write for a changed size or mtime; fs.delete and
// fs.rmdir for vanished paths (children first); a path whose inode changed
// is a delete then a create. A summary fs.rescan op follows, Count = the
// number of changes. Records queued after the overflow describe changes the
// rescan may already have reported: a create of a path the index holds with
// the same inode, a write whose size and mtime the rescan recorded, and a
// delete or rename-from of a path the rescan reported gone (until the queue
// is next seen empty) are suppressed (Stats.Suppressed). An object replaced
// by one that reuses its inode number is seen by the rescan as a write.
//
// A rescan that cannot read part of the tree (a directory it cannot open
// or list, an entry it cannot stat, for another reason than that it
// vanished) reports nothing below that part as deleted: it counts it
// (Stats.RescanErrors), and announces another rescan with an overflow op
// (Reason "emfile", … or "rescan").
//
// # Losses
//
// Nothing the reader could not turn into ops is dropped silently. Besides
// a queue overflow, these are losses: a directory handle that cannot be
// resolved for another reason than deletion (Reason "emfile", "enfile",
// "enomem" for those errnos, else "resolve"), a malformed record or read
// buffer ("parse"), a failed read of the kernel queue ("read", or the
// errno's reason), and in the inotify fallback a directory that cannot be
// watched ("watch", e.g. at fs.inotify.max_user_watches) or read. Each
// reason is reported by one fs.overflow op (Reason set, Count = the
// records known lost, 0 when unknown) at the end of the read batch, and a
// rescan follows as above; further losses of that reason before the
// rescan runs are reported by one more overflow op right before it, with
// their count. Stats.Losses counts the overflow ops by reason,
// Stats.LostRecords the records, Stats.HandleErrors the handles. A read
// that failed for want of descriptors or memory is retried after 10ms; any
// other read error ends Run with the error, after its overflow op. The
// inotify fallback watches every directory a rescan finds without a watch.
//
// A rename of a directory costs a scan of the index and of the handle
// cache (to move the prefix); hard-link detection scans the index for the
// inode (only for a new name of a file with more than one link).
//
// Rescans are spaced by Options.RescanBackoff (default 1s), counted from the
// end of the previous rescan: an overflow within the gap delays its rescan
// to the gap's end and doubles the gap (up to 30s); a quiet period of twice
// the gap resets it. The rescan runs on the reader goroutine; every 256
// entries of its walk it drains the kernel queue into memory (up to 64 MiB,
// Stats.Drained) and processes that right after the rescan, so a long walk
// (tens of milliseconds per 10,000 files on an idle machine, more under
// load) does not let the queue overflow again. Past that bound the queue
// fills, and an overflow is just another overflow, handled the same way.
//
// # Cost
//
// BenchmarkParse and BenchmarkDropOutside (no allocation, pinned by
// TestParseNoAllocs and TestDropOutsideNoAllocs) measure the parser and the
// path of an unrelated event. BenchmarkStorm runs 100,000
// create/write/close/delete cycles with and without the watcher; with
// SEMPROP_STORM_READ_ONLY=1 the watcher only reads and parses, which shows
// how much of the storm's slowdown is the kernel's (generating FID records
// for every operation) rather than this package's processing.
// BenchmarkStormKernel compares what bare groups cost the storming process
// itself (its thread's CPU time, watched ÷ unwatched): inotify with
// inotifywait's mask, inotify with modifications and attributes, this
// package's group and mark, and that group without FAN_MODIFY, without
// FAN_ATTRIB, or without object FIDs.
//
// # inotify fallback
//
// When fanotify_init or the mark fails (not root, a file system without
// file handles, …), New logs a warning and uses inotify: one watch per
// directory (fs.inotify.max_user_watches bounds the tree), added for new
// directories as they appear; a new directory is scanned right after its
// watch is added, and what was created in it before is reported as creates
// (their own events, if any, are then suppressed by the index). Renames pair
// IN_MOVED_FROM with IN_MOVED_TO by cookie; a move out of the tree is known
// when another record comes first, or when the queue has stayed empty
// behind it for 20 ms (the kernel queues the two records one after the
// other, so a read can find the first alone). IN_Q_OVERFLOW is handled
// as above. inotify reports no process: ops from the fallback have no PID,
// Comm, Exe, UID or GID, and the bridge cannot tell FUSE shadows from
// direct changes by pid. inotify does not merge different events, so the
// merge rules above do not come into play. Options.ForceInotify selects
// the fallback for tests.
package fanotify
