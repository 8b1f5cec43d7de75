// Package enrich sits between the capture bridge of one tree and the
// propagation manager: a Publisher takes the bridge's batches, drops the
// events that ignore rules exclude, holds and summarises the .git/ churn of
// git operations, adds content facts to writes, and passes the rest on in
// order.
//
// # Ignore rules
//
// Options.Ignore and the .sempropignore files of the tree, in gitignore
// syntax (see ParseRules): a file applies below its directory, a deeper
// one wins over a shallower one, the configured patterns come last. Files
// are read lazily from the backing tree and read again when an event
// touches them. An ignored event is dropped before it is journaled and
// counted; fs.overflow and fs.rescan are never ignored, and a rename only
// when both its names are ignored.
//
// # Content facts
//
// fs.write, fs.create (unless known empty) and fs.rename of a file get
// extension attributes: hash (xxh3-128, or SHA-256 per tree), mime (from
// magic bytes, without parameters), entropy (Shannon bits per byte of the
// whole file up to 192 KiB, else of its first, middle and last 64 KiB),
// optionally lines and words of text files; and, when the path has last
// known facts, changed, prevsize, mimechanged and preventropy. Without
// facts an event carries enrich=gone (the file was gone before it could be
// read), enrich=skipped (the wait ran out or the queue was full),
// enrich=toolarge (above Options.MaxSize), enrich=coalesced (a later event
// of the same path in the batch, or a newer read, has them) or
// enrich=error (it could not be read). Nothing is guessed: an event whose
// path is not a regular file (a FIFO, a symbolic link) gets neither facts
// nor a flag.
//
// Files are read through the backing tree (Options.Backing), never through
// a semprop mount, without following a final symbolic link, with O_NOATIME;
// reading makes no event the kernel boundary asks for (it marks changes,
// not access).
//
// # Never at capture's expense
//
// Reads run on a bounded pool (Options.Workers) with per-path coalescing:
// a queued read of a path is replaced by a newer one, so a busy file is
// read once per round, at its latest version. A batch waits for its facts
// at most Options.Wait from its arrival; calls are serialised, so a slow
// file delays the events behind it by at most that. Once a wait has run
// out, batches do not wait at all until the readers have caught up. The index of last-known
// facts (bounded, persistent in Options.Dir: an append-only log with a CRC
// per record, compacted on open) keeps changed right across restarts.
//
// # VCS awareness
//
// With Options.VCS summarise or drop, an fs.create of a lock file under
// WORKTREE/.git/ (index.lock; a ref's lock in a fetch;
// objects/maintenance.lock) starts a git operation: every event under
// WORKTREE/.git/ is then held until index.lock, if it was taken, is gone
// (renamed or deleted) and Options.VCSQuiet has passed without further
// events there, so one operation that takes the lock more than once is
// still one. In summarise mode it then becomes one
// vcs.git event: subject the work tree, the process context of the event
// that took the lock, count (events held), first (time of the first) and
// refs (the refs it wrote). Events outside .git/ pass as usual.
//
// Settling (one event per burst on a path) is a choice of each reader, not
// of the journal: streams ask for it with settle= (package api).
package enrich
