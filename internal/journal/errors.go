package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
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
	// ErrNoSpace is matched by the error of Write, Append, WaitDurable and
	// Err while the file system is full (ENOSPC or EDQUOT). It is not
	// sticky: the journal keeps the records it could not write, retries on
	// its own, and writes are accepted again once the retry succeeded. A
	// record whose WaitDurable returned it was not acknowledged (it may
	// still be written later, like a record whose ctx ended).
	ErrNoSpace = errors.New("journal: no space left on device")
	// ErrIO is matched by the sticky error of a write, fsync or segment
	// creation that failed for a reason other than a full disk: the journal
	// accepts no more writes until it is closed and reopened.
	ErrIO = errors.New("journal: i/o error")
)

// noSpaceError is what callers see while the disk is full: ErrNoSpace,
// wrapping EDQUOT when a quota is what ran out. It names no file.
func noSpaceError(err error) error {
	if errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w (%w)", ErrNoSpace, syscall.EDQUOT)
	}
	return ErrNoSpace
}

// stickyError is what callers see after a write failure that stops the
// journal: ErrIO wrapping only the errno (or other cause) of err, without
// the file names err carries, so that it can be shown to a remote client.
// The names stay in the journal's log.
func stickyError(err error) error {
	var errno syscall.Errno
	var pe *fs.PathError
	switch {
	case errors.As(err, &errno):
		return fmt.Errorf("%w: %w", ErrIO, errno)
	case errors.As(err, &pe):
		return fmt.Errorf("%w: %w", ErrIO, pe.Err)
	}
	return ErrIO
}

// isNoSpace reports whether err says that the file system is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

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
