// Package audit is semprop's tamper-evident audit trail: an append-only
// file of JSON records, one per line, each holding the SHA-256 of the
// line before it, so that changing, inserting or removing a record
// breaks the chain at that record. Verify checks a chain; Log appends to
// one and fsyncs every record before Append returns, so a record that an
// action's caller has seen is on disk.
//
// The chain proves the order and the content of what is there, not that
// nothing was cut from the end: keep Head (the last record's hash)
// elsewhere to detect that.
package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/semprop/semprop/internal/atomicfile"
)

// Errors.
var (
	ErrBroken = errors.New("audit: broken chain")
	ErrClosed = errors.New("audit: log closed")
)

// FileName is the name of the log in its directory.
const FileName = "audit.log"

// Genesis is the Prev of the first record.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// maxLine bounds one record.
const maxLine = 4 << 20

// Check is one precondition and its result.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Record kinds.
const (
	KindIntent         = "intent"          // an action is about to run
	KindDone           = "done"            // it ran and succeeded
	KindFailed         = "failed"          // it failed after its retries, or was refused by a precondition
	KindInterrupted    = "interrupted"     // it was in flight at a crash and cannot be known to have run
	KindRollback       = "rollback"        // a rollback is about to run
	KindRolledBack     = "rolledback"      // it ran
	KindRollbackFailed = "rollback-failed" // it failed
	KindMatch          = "match"           // the outcome of a whole match: ok, failed or rolledback
)

// Record is one line of the log. Seq, Time and Prev are set by Append.
type Record struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Prev string    `json:"prev"` // hex SHA-256 of the previous line

	Kind     string   `json:"kind"`
	Key      string   `json:"key,omitempty"`   // idempotency key: rule/match/index
	Rule     string   `json:"rule,omitempty"`  // the rule
	Match    string   `json:"match,omitempty"` // the match event's ID
	MatchSeq uint64   `json:"match_seq,omitempty"`
	Seqs     []uint64 `json:"seqs,omitempty"` // the matched events
	Index    int      `json:"index"`          // the action's index in the rule's list
	Type     string   `json:"type,omitempty"` // the action's type

	Args          map[string]any  `json:"args,omitempty"`
	Preconditions []Check         `json:"preconditions,omitempty"`
	State         json.RawMessage `json:"state,omitempty"`  // what the action prepared (for recovery and rollback)
	Result        json.RawMessage `json:"result,omitempty"` // what it did
	Outcome       string          `json:"outcome,omitempty"`
	Error         string          `json:"error,omitempty"`
	Attempts      int             `json:"attempts,omitempty"`
	DurationNS    int64           `json:"duration_ns,omitempty"`
}

// Hash returns the hex SHA-256 of a record's line (without its newline).
func Hash(line []byte) string {
	s := sha256.Sum256(line)
	return hex.EncodeToString(s[:])
}

// BrokenError says where a chain breaks.
type BrokenError struct {
	Line   int // 1-based line of the first broken record
	Reason string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit: record at line %d: %s", e.Line, e.Reason)
}

// Unwrap makes errors.Is(err, ErrBroken) true.
func (e *BrokenError) Unwrap() error { return ErrBroken }

// Scan reads a chain from r, calling fn for each record in order, and
// checks it: every line is a record, seqs count from 1, and each Prev is
// the hash of the line before. It returns a *BrokenError at the first
// broken record; torn reports whether the input ended in a line without
// its newline (a write cut by a crash), which is not passed to fn. It
// returns the hash of the last good record.
func Scan(r io.Reader, fn func(line int, rec *Record) error) (head string, n int, torn bool, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	prev := Genesis
	var line []byte
	for {
		line = line[:0]
		var isPrefix bool = true
		var chunk []byte
		for isPrefix {
			chunk, isPrefix, err = br.ReadLine()
			if err != nil {
				break
			}
			line = append(line, chunk...)
			if len(line) > maxLine {
				return prev, n, false, &BrokenError{Line: n + 1, Reason: "record too long"}
			}
		}
		if errors.Is(err, io.EOF) {
			return prev, n, false, nil
		}
		if err != nil {
			return prev, n, false, fmt.Errorf("audit: read: %w", err)
		}
		// ReadLine does not say whether the last line had its newline:
		// peek for EOF and look at what was consumed.
		if _, perr := br.Peek(1); errors.Is(perr, io.EOF) && !endedWithNewline(r) {
			return prev, n, true, nil
		}
		n++
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil {
			return prev, n - 1, false, &BrokenError{Line: n, Reason: "not a record: " + err.Error()}
		}
		if rec.Seq != uint64(n) {
			return prev, n - 1, false, &BrokenError{Line: n, Reason: fmt.Sprintf("seq %d, want %d (a record removed or inserted)", rec.Seq, n)}
		}
		if rec.Prev != prev {
			return prev, n - 1, false, &BrokenError{Line: n, Reason: fmt.Sprintf("prev %.16s…, want %.16s… (this record or the one before was changed)", rec.Prev, prev)}
		}
		if fn != nil {
			if err := fn(n, &rec); err != nil {
				return prev, n, false, err
			}
		}
		prev = Hash(line)
	}
}

// endedWithNewline reports whether the whole input read so far ended
// with a newline; Scan only asks at the end of the input. It works for
// the readers Scan is given: anything else is assumed complete.
func endedWithNewline(r io.Reader) bool {
	if t, ok := r.(interface{ lastByte() (byte, bool) }); ok {
		b, ok := t.lastByte()
		return !ok || b == '\n'
	}
	return true
}

// tailReader remembers the last byte it returned.
type tailReader struct {
	r    io.Reader
	last byte
	any  bool
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.last, t.any = p[n-1], true
	}
	return n, err
}

func (t *tailReader) lastByte() (byte, bool) { return t.last, t.any }

// Verify checks the chain in dir (a directory holding audit.log, or the
// file itself). It returns the number of records and nil, or the first
// broken record as a *BrokenError; a torn last line is reported as broken
// too (the daemon cuts it when it starts).
func Verify(path string) (int, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, FileName)
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	_, n, torn, err := Scan(&tailReader{r: f}, nil)
	if err != nil {
		return n, err
	}
	if torn {
		return n, &BrokenError{Line: n + 1, Reason: "torn: the last line was cut by a crash"}
	}
	return n, nil
}

// Read calls fn for each record in the log in dir, in order, checking the
// chain as it goes (see Scan).
func Read(dir string, fn func(rec *Record) error) error {
	_, _, err := scanDir(dir, fn)
	return err
}

// scanDir is Read that also returns the chain's head and length.
func scanDir(dir string, fn func(rec *Record) error) (string, int, error) {
	f, err := openLog(dir)
	if errors.Is(err, os.ErrNotExist) {
		return Genesis, 0, nil
	}
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	head, n, _, err := Scan(&tailReader{r: f}, func(_ int, r *Record) error { return fn(r) })
	return head, n, err
}

// openLog opens the log in dir, or the file dir itself, for reading.
func openLog(dir string) (*os.File, error) {
	path := dir
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		path = filepath.Join(dir, FileName)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return f, nil
}

// Log appends records to the chain in a directory. It is safe for
// concurrent use.
type Log struct {
	dir string
	log *slog.Logger

	mu     sync.Mutex // guards the fields below
	f      *os.File
	seq    uint64
	head   string
	closed bool
	buf    bytes.Buffer
}

// Open opens (or creates) the log in dir. It checks the whole chain and
// refuses a broken one (ErrBroken); a torn last line, left by a crash in
// the middle of a write that was therefore never reported done, is cut.
func Open(dir string, logger *slog.Logger) (*Log, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var good int64
	count := &countReader{r: f}
	head, n, torn, err := Scan(&tailReader{r: count}, nil)
	if err != nil {
		f.Close()
		return nil, err
	}
	if torn {
		// Find where the last good record ends: re-read the lines.
		if good, err = goodPrefix(f, n); err != nil {
			f.Close()
			return nil, err
		}
		logger.Warn("audit: cutting a record torn by a crash", "file", path, "records", n)
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, fmt.Errorf("audit: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	return &Log{dir: dir, log: logger, f: f, seq: uint64(n), head: head}, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// goodPrefix returns the length of the first n lines of f.
func goodPrefix(f *os.File, n int) (int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	br := bufio.NewReader(f)
	var off int64
	for range n {
		line, err := br.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) {
			off += int64(len(line))
			line, err = br.ReadSlice('\n')
		}
		if err != nil {
			return 0, fmt.Errorf("audit: %w", err)
		}
		off += int64(len(line))
	}
	return off, nil
}

func syncDir(dir string) error {
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// Dir returns the log's directory.
func (l *Log) Dir() string { return l.dir }

// Append sets rec's Seq, Prev and (if zero) Time, writes it and fsyncs the
// file; when it returns nil the record is durable.
func (l *Log) Append(rec *Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	rec.Seq, rec.Prev = l.seq+1, l.head
	if rec.Time.IsZero() {
		rec.Time = time.Now().UTC()
	}
	l.buf.Reset()
	enc := json.NewEncoder(&l.buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(rec); err != nil {
		return fmt.Errorf("audit: encode: %w", err)
	}
	line := l.buf.Bytes()
	if len(line) > maxLine {
		return fmt.Errorf("audit: record of %d bytes: %w", len(line), ErrBroken)
	}
	if _, err := l.f.Write(line); err != nil {
		return fmt.Errorf("audit: write: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("audit: fsync: %w", err)
	}
	l.seq, l.head = rec.Seq, Hash(line[:len(line)-1])
	return nil
}

// Head returns the number of records and the hash of the last one.
func (l *Log) Head() (uint64, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, l.head
}

// Close closes the file; further Appends fail with ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return l.f.Close()
}
