package journal

import (
	"errors"
	"fmt"
)

// Sentinel errors. Compare with errors.Is.
var (
	// ErrClosed is returned by every operation on a closed Journal, and by
	// Reader.Next/TryNext once the Journal is closed.
	ErrClosed = errors.New("journal: closed")
	// ErrCorrupt is matched by every *CorruptError.
	ErrCorrupt = errors.New("journal: corrupt")
	// ErrTruncated is matched by every *TruncatedError: the requested seq was
	// deleted by retention.
	ErrTruncated = errors.New("journal: truncated by retention")
	// ErrRecordTooLarge is returned by Write when a payload exceeds
	// MaxRecordSize.
	ErrRecordTooLarge = errors.New("journal: record too large")
	// ErrLocked is returned by Open when another process holds the journal
	// directory.
	ErrLocked = errors.New("journal: directory locked by another process")
)

// CorruptError reports damage found in a segment file: a CRC mismatch, a seq
// discontinuity or a malformed header that is not a torn tail.
// errors.Is(err, ErrCorrupt) holds for it.
type CorruptError struct {
	File   string // path of the segment file
	Offset int64  // byte offset of the bad record in File
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("journal: corrupt segment %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// TruncatedError says that Requested is older than the oldest retained
// record, First. errors.Is(err, ErrTruncated) holds for it. First is where a
// caller may resume: Journal.Reader(First), or simply call Reader.Next again
// (a Reader that returned a TruncatedError has already skipped to First).
type TruncatedError struct {
	Requested uint64 // the seq the caller asked for
	First     uint64 // the oldest seq still retained
}

func (e *TruncatedError) Error() string {
	return fmt.Sprintf("journal: seq %d truncated by retention, first available is %d", e.Requested, e.First)
}

// Is reports whether target is ErrTruncated.
func (e *TruncatedError) Is(target error) bool { return target == ErrTruncated }
