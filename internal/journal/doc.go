// Package journal is semprop's source of truth: a durable, segmented,
// append-only log of opaque byte records (the caller encodes events) with
// consecutive sequence numbers starting at 1.
//
// # Record format
//
// A segment file is a run of records, each
//
//	[u32 length][u32 CRC32C][u64 seq][payload]
//
// little-endian, where length is the payload length and the CRC (Castagnoli)
// covers the 8 seq bytes followed by the payload. Segment files are named by
// their first seq, zero-padded to 20 digits (00000000000000000001.seg). A
// segment is rolled when the next record would push it past
// Options.SegmentSize; a segment always holds at least one record, so a
// record larger than SegmentSize gets a segment of its own. A sparse index
// (one entry per 64 KiB) per segment, kept up to date while writing, makes
// Journal.Reader(seq) a binary search plus a short scan.
//
// When a segment is sealed (the next one is created), the journal writes
// its index file beside it (NAME.idx): the sparse index and a checksummed
// footer with the first and last seq, the record count, the size and the
// CRC of the index (format in index.go), and appends the same footer, with
// the segment's mtime and whether it was fsynced, as one checksummed entry
// to the manifest (dir/MANIFEST, format in manifest.go). Index files and
// the manifest are a cache of what scanning the segments would find:
// written without fsync, used by Open only when they check out, rebuilt
// by Open otherwise; retention deletes a segment's index file with it.
//
// # Writing and durability
//
// Write assigns seqs and encodes records into an in-memory buffer under one
// mutex; it never waits for I/O (with a mapped segment, below, it copies the
// records into the page cache), except that it blocks while more than 8 MiB
// are buffered and not yet written (backpressure). A single flusher
// goroutine takes the whole buffer, writes it with pwrite(2) and, depending
// on the policy, fsyncs; then it advances DurableSeq and closes the channel
// returned by Changed. With FsyncNever and FsyncInterval a writer may do
// the flusher's job itself right after Write (WriteOut): when no write is
// under way it takes the buffer and writes it from its own goroutine, which
// saves the two goroutine hand-offs of waiting for the flusher (bench/ row
// 1, batches of 100: +20–25% events/s); when a write is under way, its
// writer or the flusher writes the records next.
//
// With FsyncNever the active segment is preallocated (fallocate(2), to
// SegmentSize plus 4 KiB) and memory-mapped, and Write copies its records
// into the mapping before it returns (under flushMu; a writer that finds
// its records taken by another's copy has nothing left to do): written to
// the OS without a system call or a hand-off to the flusher. Chunks over
// 4 KiB are written with pwrite(2) into the same file instead (a write
// fault per page costs more than the call past that). The copy goes front
// to back in 8-byte stores, so a process killed mid-copy leaves a prefix
// of the records and zeros after it. A copy that reaches pages not yet
// faulted in first faults in the next 256 KiB with one
// madvise(MADV_POPULATE_WRITE) call instead of one write fault per page
// (-15% per one-record Write), and a toucher goroutine writes to the
// pages another 256 KiB ahead (an atomic add of zero to each page's first
// word, which cannot change what the writer stores there): on a virtual
// machine the first write from user space to a freshly faulted-in page
// can cost microseconds (the host backs the page then; 3–9 µs here), which
// the toucher pays on another thread instead of the publisher (bench/
// row 1, unbatched Publish: +57%). Readers read a mapped segment only up
// to its written records, through a read-only mapping of their own: a
// copy instead of a pread(2) for each batch of new records a tailing
// reader takes (BenchmarkReaderTail, one record written and read: ~3 µs
// → ~0.4 µs here, where a system call costs over 1 µs); a page that
// faults while read (past the end of a file cut shorter, or not readable
// back from the disk) is an error of the read, not a crash. Sealing a
// segment (and Close) unmaps it and cuts the file back to its records.
// Where fallocate or mmap fails (a file system without preallocation, a
// full disk), the segment is written with pwrite(2). FsyncInterval and
// FsyncAlways are not mapped: after a machine crash the pages of a
// preallocated file reach the disk in any order, so records not yet
// fsynced could leave zeros before written data, which recovery could not
// tell from damage.
//
// "Durable" means, per Options.Fsync:
//
//   - FsyncAlways (default): fsynced (fdatasync). Group commit: every record
//     buffered while the previous fsync ran shares the next one, so many
//     concurrent appenders cost one fsync per batch. An acknowledged record
//     (WaitDurable or Append returned nil) survives a machine crash.
//   - FsyncInterval: written to the OS as soon as there is data, fsynced every
//     FsyncInterval. Durable records survive a crash of the process, but a
//     machine crash (power loss, kernel panic) may lose up to the last
//     interval of acknowledged records.
//   - FsyncNever: written to the OS and never fsynced by the journal while it
//     runs (only by Close). A machine crash may lose any amount, and since
//     finished segments are not fsynced either, Open may then find a hole
//     before the last segment and fail with a *CorruptError.
//
// With FsyncAlways and FsyncInterval a segment is fsynced before the next one
// is created, and the directory is fsynced after a creation. Close writes
// and fsyncs everything buffered under every policy.
//
// # Errors and a full disk
//
// Errors returned by Write, WaitDurable, Append, Err and Close never name
// a file (they may reach remote clients); the journal's log does.
//
// When the file system is full (ENOSPC or EDQUOT from write(2), from
// creating a segment or, with FsyncAlways, from fsync), the journal does
// not stop for good. It keeps the records it could not write in memory,
// with the seqs they were given, and:
//
//   - Write refuses new records at once with an error matching ErrNoSpace
//     (no seq is used), Err returns that error (so the daemon can report
//     not ready and answer 507), and every WaitDurable/Append whose record
//     is not yet durable returns it: nothing that was not written is
//     acknowledged. Such a record is not lost, though: like one whose ctx
//     ended, it is written once space returns.
//   - The flusher retries on its own with backoff (20 ms doubling to 1 s):
//     it truncates the active segment to its last whole record (freeing
//     what a partial write allocated) and writes the batch again from
//     memory. After a failed fsync the state of the pages it covered is
//     unknown, so with FsyncAlways the segment is cut back to the last
//     successful fsync and everything after it is written again before
//     anything is acknowledged.
//   - Once a retry wrote and fsynced the whole batch, Err returns nil
//     again, the records buffered before the refusal follow with their
//     seqs, and Write accepts new records. Seqs stay contiguous; none is
//     skipped or reused.
//
// The journal logs the first failure (ERROR, with the file), then at most
// one line per 10 s while retries fail (with the count of failures held
// back) and one when writing resumes. Stats reports NoSpace,
// NoSpaceEpisodes and NoSpaceRetries. If Close is called while the disk is
// still full, it returns an error matching ErrNoSpace and the records not
// written by then are lost (none was acknowledged); the next Open
// recovers as after a crash.
//
// Every other failure is sticky: a write or fsync error other than a full
// disk (EIO and the like: after a failed fsync the kernel may have dropped
// the dirty pages, so nothing can be trusted without a rescan), and an
// fsync failure under FsyncInterval or FsyncNever (the records it covered
// were already acknowledged and are no longer in memory to write again).
// Write, WaitDurable and Err then return an error matching ErrIO (wrapping
// the errno), Readers return it once they reach the end of durable
// records, and the journal must be closed and reopened (recovery then
// checks and cuts what was torn).
//
// # Recovery
//
// Open lists the directory, reads the manifest and scans the last
// segment, verifying every CRC and that seqs are contiguous within it and
// across segments. A sealed segment the manifest lists as fsynced (fsync
// always or interval) is not touched at all, so after a clean shutdown or
// a crash the time Open takes does not depend on how many sealed segments
// there are (BenchmarkOpen: 1 to 1000 segments); its sparse index is
// loaded from its index file by the first Reader that needs it. An entry
// not marked fsynced (fsync never) costs one stat: it is used only if the
// segment has the size it records. A sealed segment the manifest does not
// describe (no manifest, a torn or damaged one, a crash between sealing
// the segment and appending its entry, a segment added behind the
// journal's back) is described by its index file, or scanned like the
// last one (and its index file written again) when that is missing, torn,
// damaged, or does not match the segment: another first seq, or another
// size (segments are append-only, so a stale index file has another size).
// Open then writes the manifest again (temporary file, fsync, rename,
// directory fsync) before anything is written. The records of a sealed
// segment Open did not scan are checked (CRC, seq) by every Reader that
// reads them, which returns a *CorruptError naming file and offset on
// damage (so does a Reader that finds a segment shorter than its manifest
// entry says), and by Verify, which reads everything and also reports a
// manifest entry that does not match its segment.
//
// Damage Open finds fails it with a *CorruptError naming file and offset;
// the only exception is a torn tail, which a crash leaves and which holds
// only records that were never acknowledged. Nothing is skipped silently,
// and a seq that was acknowledged is never given to another record.
//
// Torn tails and corruption are told apart as follows. Close, once
// everything is written and fsynced, leaves a clean-shutdown marker
// (dir/CLEAN: the last segment's first seq, size and last seq, with a CRC;
// written to a temporary file, fsynced, renamed, directory fsynced). Open
// checks the journal against it and deletes it (fsyncing the directory)
// before anything can be written, so the marker exists only if nothing was
// being written when the journal stopped.
//
//   - With the marker (clean shutdown), no torn write can exist: the last
//     segment must end exactly where the marker says, with the seq it
//     says. A CRC mismatch in the last record, a record cut short, bytes
//     after the end (even zeros), a missing last segment or an extra one
//     are corruption. A damaged marker is corruption too (the error names
//     it); delete it to recover as after a crash.
//   - Without it (crash), the last segment's tail is cut if it is torn
//     (the file is truncated to the last whole record and fsynced, with a
//     WARN log naming the file, offset and bytes cut): a header shorter
//     than 16 bytes at the end, a length that runs past the end of the
//     file, or a final record whose CRC fails and which has the shape of a
//     write torn by a crash: zero from its start, or from a 512-byte sector
//     boundary inside it, to the end of the file. A crash loses whole
//     sectors, which read back as zeros, while a flipped bit or garbled
//     bytes do not look like that: a final record damaged in any other way
//     is corruption even after a crash. One more shape is torn: a final
//     record zero from any byte inside it on, when zeros follow it to the
//     end of the file — a copy into a mapped segment's preallocated space
//     cut short by the process's death (a file written with pwrite(2) ends
//     at its last record, so this shape cannot hide damage there). (With FsyncAlways an acknowledged
//     record was fsynced; on file systems that persist a file's size only
//     with its data — ext4 data=ordered, XFS, btrfs — a record the file
//     size covers after a crash was written whole, so what fails its CRC
//     without that shape was damaged later.)
//
// Every other damage — a CRC mismatch followed by more data, a seq
// discontinuity, a malformed record in an earlier segment — fails Open the
// same way. After a refusal the files are left untouched; an operator who
// accepts the loss can cut the segment at the reported offset (truncate
// -s OFFSET FILE), delete later segments (with their .idx files) and
// dir/CLEAN, and reopen (Open drops the manifest entries of the cut and
// deleted segments); the
// seqs cut are then given to new records, so consumers past them must be
// reset. Open logs the segments, bytes
// and time scanned and whether the shutdown was clean. An advisory lock
// (dir/LOCK) keeps a second process out.
//
// # Readers
//
// A Reader returns records in seq order, only up to DurableSeq, so a reader
// never sees a record that a crash could erase. Next blocks on Changed (no
// polling) until a record becomes durable. Each Reader has its own file
// descriptor (and, following a mapped segment, its own mapping of it); a
// payload is valid until the next call on that Reader.
//
// Retention (RetentionBytes, RetentionAge; checked after every roll and
// periodically) deletes whole oldest segments, never the active one. A
// Reader keeps reading a deleted segment through its open descriptor; if the
// segment it needs next was deleted, Next returns a *TruncatedError
// (errors.Is ErrTruncated) with the first retained seq and continues from
// there on the following call. Journal.Reader(from) with from older than
// FirstSeq returns the same error and no Reader; the caller resumes with
// Reader(err.First) if it accepts the gap.
package journal
