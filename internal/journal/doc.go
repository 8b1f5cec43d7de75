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
// (one entry per 64 KiB) per segment, built at Open and kept up to date while
// writing, makes Journal.Reader(seq) a binary search plus a short scan.
//
// # Writing and durability
//
// Write assigns seqs and encodes records into an in-memory buffer under one
// mutex; it never waits for I/O, except that it blocks while more than 8 MiB
// are buffered and not yet written (backpressure). A single flusher
// goroutine takes the whole buffer, writes it with pwrite(2) and, depending
// on the policy, fsyncs; then it advances DurableSeq and closes the channel
// returned by Changed. "Durable" means, per Options.Fsync:
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
// and fsyncs everything buffered under every policy. An I/O error while
// writing or fsyncing is sticky: Write and WaitDurable return it and the
// journal must be closed and reopened (recovery then cuts what was torn).
//
// # Recovery
//
// Open scans every segment, verifies every CRC and that seqs are contiguous
// within and across segments, and rebuilds the index. In the last segment
// only, a torn final record is cut away (the file is truncated to the last
// whole record and fsynced, with a WARN log naming the file, offset and bytes
// cut): a header shorter than 16 bytes at the end, a length that runs past
// the end of the file, or a CRC mismatch in a record that ends exactly at the
// end of the file or is followed only by zero bytes. Every other damage — a
// CRC mismatch followed by more data, a seq discontinuity, a malformed record
// in an earlier segment — fails Open with a *CorruptError naming file and
// offset. Nothing is skipped silently. Open logs the segments, bytes and
// time scanned. An advisory lock (dir/LOCK) keeps a second process out.
//
// # Readers
//
// A Reader returns records in seq order, only up to DurableSeq, so a reader
// never sees a record that a crash could erase. Next blocks on Changed (no
// polling) until a record becomes durable. Each Reader has its own file
// descriptor; a payload is valid until the next call on that Reader.
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
