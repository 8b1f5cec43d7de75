package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/semprop/semprop/internal/metrics"
	"github.com/semprop/semprop/internal/nanoclock"
)

// FsyncPolicy says when the journal fsyncs and therefore what DurableSeq
// means. See the package doc.
type FsyncPolicy uint8

// The fsync policies.
const (
	FsyncAlways   FsyncPolicy = iota // group commit: durable = fsynced
	FsyncInterval                    // durable = written to the OS; fsync every FsyncInterval
	FsyncNever                       // durable = written to the OS; never fsynced while running
)

// ParseFsyncPolicy parses "always", "interval" or "never".
func ParseFsyncPolicy(s string) (FsyncPolicy, error) {
	switch s {
	case "always":
		return FsyncAlways, nil
	case "interval":
		return FsyncInterval, nil
	case "never":
		return FsyncNever, nil
	}
	return 0, fmt.Errorf("journal: unknown fsync policy %q (want always, interval or never)", s)
}

// String returns the name ParseFsyncPolicy accepts.
func (p FsyncPolicy) String() string {
	switch p {
	case FsyncAlways:
		return "always"
	case FsyncInterval:
		return "interval"
	case FsyncNever:
		return "never"
	}
	return fmt.Sprintf("FsyncPolicy(%d)", uint8(p))
}

// Defaults for Options.
const (
	DefaultSegmentSize   = 64 << 20
	DefaultFsyncInterval = 10 * time.Millisecond
	// defaultMaxPending bounds the bytes buffered but not yet written; Write
	// waits while the buffer is above it.
	defaultMaxPending     = 8 << 20
	defaultRetentionEvery = time.Minute
)

// Options configure Open. The zero value of every field means its default.
type Options struct {
	Dir            string        // created if missing
	SegmentSize    int64         // roll threshold in bytes; default 64 MiB
	Fsync          FsyncPolicy   // default FsyncAlways
	FsyncInterval  time.Duration // period for FsyncInterval; default 10ms
	RetentionBytes int64         // 0 = unlimited; delete whole oldest segments while total > this
	RetentionAge   time.Duration // 0 = unlimited; delete whole segments sealed longer ago (their newest record is at least as old)
	Logger         *slog.Logger  // nil = slog.Default()

	// Test-only knobs, set only by tests in this package.
	splitWrite     time.Duration        // >0: write each flush in two write(2) calls with this sleep between
	now            func() time.Time     // clock for retention by age
	retentionEvery time.Duration        // period of the retention check
	maxPending     int64                // backpressure bound
	syncFault      func(*os.File) error // non-nil: called before each fdatasync; an error replaces it
	noMap          bool                 // write segments with pwrite(2) even where they could be mapped
}

// Stats is a snapshot of the journal's counters.
type Stats struct {
	Segments          int           // segment files retained
	Bytes             int64         // bytes in retained segments (written records)
	FirstSeq          uint64        // oldest retained seq (LastSeq+1 if empty)
	LastSeq           uint64        // last assigned seq
	DurableSeq        uint64        // highest durable seq
	Fsyncs            uint64        // fdatasync calls made
	FsyncNanos        int64         // total time spent in them
	FsyncP99          time.Duration // 99th percentile of an fsync (bucket bound: at most twice the true value)
	Flushes           uint64        // batches written to the OS
	WriterFlushes     uint64        // of those, written by a writer in WriteOut instead of the flusher
	BytesWritten      uint64        // bytes written to the OS since Open
	Truncated         int64         // bytes of torn tail cut at Open
	SegmentsDeleted   uint64        // segments deleted by retention since Open
	BackpressureWaits uint64        // times Write waited for the buffer to drain
	NoSpace           bool          // writes are refused now because the disk is full
	NoSpaceEpisodes   uint64        // times the disk was found full since Open
	NoSpaceRetries    uint64        // attempts to write again after that
}

// chunk is a run of encoded records bound for one segment. newSeg says the
// segment starting at base must be created before writing data.
type chunk struct {
	newSeg  bool
	base    uint64
	last    uint64
	lastOff int64 // offset in its segment of the record with seq last
	data    []byte
	idx     []indexEntry
}

// Journal is a durable, segmented, append-only log of opaque records with
// consecutive sequence numbers starting at 1. All methods are safe for
// concurrent use.
type Journal struct {
	// Locks: mu (write side), segMu (segment list) and chMu (Changed
	// channel). No goroutine ever holds two of them at once, so there is no
	// lock order among them; keep it that way. flushMu (writing to the
	// active segment) is outermost: held while taking any of them, never
	// taken while holding one.

	opts Options
	log  *slog.Logger
	lock *os.File

	// mu guards the write side: seq assignment and the pending buffer.
	mu         sync.Mutex
	notFull    sync.Cond // on mu; broadcast when the flusher takes the buffer or on Close/failure
	lastSeq    uint64
	pend       []chunk // records not yet handed to the flusher
	pendWrites int     // Write calls whose records are in pend
	spare      []chunk // the batch the flusher is writing (or wrote last)
	pendBytes  int64
	activeBase uint64 // segment the next record goes to
	activeSize int64  // bytes of that segment, counting pending records
	lastIdxOff int64  // offset of the newest index entry in that segment
	closed     bool
	failed     error // sticky write/fsync error (without file names)
	noSpace    error // non-nil while the disk is full: Write refuses with it

	lastSeqA atomic.Uint64
	durable  atomic.Uint64
	mapped   atomic.Bool
	closedA  atomic.Bool
	failErr  atomic.Pointer[error] // = failed
	spaceErr atomic.Pointer[error] // = noSpace

	// chMu guards ch, the channel Changed returns, and waiters, the
	// goroutines blocked in WaitDurable.
	chMu    sync.Mutex
	ch      chan struct{}
	waiters []*waiter
	// listening is true while ch is open or waiters is not empty (set
	// and cleared under chMu): notify skips chMu when it is false.
	listening atomic.Bool

	// segMu guards segs and the mutable fields of each segment.
	segMu sync.RWMutex
	segs  []*segment

	// flushMu is held by whoever writes to the active segment: the
	// flusher goroutine, or a writer in WriteOut. flusherGone is set under
	// it when the flusher has made its last flush.
	flushMu     sync.Mutex
	flusherGone bool

	// Guarded by flushMu (and owned by Close after the flusher stopped).
	// amap is the active segment's file mapped for writing (nil when it
	// is written with pwrite); mapped mirrors amap != nil for Write.
	active    *os.File
	activeSeg *segment
	amap      []byte
	popEnd    int64    // amap is faulted in up to here
	popOff    bool     // prefault is not supported
	touch     *toucher // writes to amap's pages ahead of the writer
	written   uint64   // last seq written to the OS
	synced    uint64   // last seq fsynced
	// The batch being written is spare[batchPos:]; mark is where a failed
	// fsync rewinds to. retrying is true while the disk is full.
	batchPos       int
	mark           syncMark
	retrying       bool
	retryDelay     time.Duration
	noSpaceSince   time.Time
	retriesAtStart uint64

	// The manifest, open for appending (nil if Open could not write it),
	// the offset of its end and a buffer for an entry. Under flushMu.
	man    *os.File
	manOff int64
	manBuf []byte

	limited *limitedLog // for messages that may repeat

	kick    chan struct{}   // writers → flusher
	syncReq chan chan error // Sync → flusher
	retKick chan struct{}   // flusher → retention
	stop    chan struct{}   // closed by Close: goroutines finish
	done    chan struct{}   // closed by Close after the final flush
	wg      sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	truncated      int64
	scannedAtOpen  int // segments Open read through (the others came from the manifest or index files)
	manifestAtOpen int // sealed segments Open took from the manifest
	fsyncs         atomic.Uint64
	fsyncNanos     atomic.Int64
	flushes        atomic.Uint64
	writerFlushes  atomic.Uint64
	// copiedTouched counts chunks larger than mapCopyMax copied into the
	// mapped segment (their pages touched; flushMu), for tests.
	copiedTouched     int
	bytesWritten      atomic.Uint64
	segmentsDeleted   atomic.Uint64
	backpressureWaits atomic.Uint64
	noSpaceEpisodes   atomic.Uint64
	noSpaceRetries    atomic.Uint64
	fsyncTime         metrics.Histogram // fdatasync durations
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Open opens (creating if needed) the journal in opts.Dir and recovers it:
// sealed segments are described by their index files (scanned when those
// are missing or do not check out), the last segment is scanned, CRCs and
// seq continuity verified, and a torn tail of the last segment cut (with a
// WARN log). Any other damage found fails Open with a *CorruptError; see
// the package doc for what Open checks and what Readers check.
func Open(opts Options) (*Journal, error) {
	if opts.Dir == "" {
		return nil, errors.New("journal: Options.Dir is empty")
	}
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	if opts.FsyncInterval <= 0 {
		opts.FsyncInterval = DefaultFsyncInterval
	}
	if opts.Fsync > FsyncNever {
		return nil, fmt.Errorf("journal: invalid fsync policy %d", opts.Fsync)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.now == nil {
		opts.now = nanoclock.Now // one clock read, not time.Now's two
	}
	if opts.retentionEvery <= 0 {
		opts.retentionEvery = defaultRetentionEvery
	}
	if opts.maxPending <= 0 {
		opts.maxPending = defaultMaxPending
	}
	log := opts.Logger.With("dir", opts.Dir)
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("journal: create %s: %w", opts.Dir, err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	j := &Journal{
		opts:    opts,
		log:     log,
		lock:    lock,
		kick:    make(chan struct{}, 1),
		syncReq: make(chan chan error),
		retKick: make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		limited: newLimitedLog(log, logEvery, time.Now),
	}
	j.notFull.L = &j.mu
	if err := j.recover(); err != nil {
		if lock != nil {
			lock.Close()
		}
		return nil, err
	}
	j.wg.Add(1)
	go j.flushLoop()
	if opts.RetentionBytes > 0 || opts.RetentionAge > 0 {
		j.wg.Add(1)
		go j.retentionLoop()
	}
	return j, nil
}

var zeroHeader [headerSize]byte

// Write assigns n consecutive seqs first..first+n-1 and appends one record
// per seq, whose payload enc appends to dst (returning the extended slice).
// enc is called with the journal's write lock held, in order i = 0..n-1: it
// must be quick, must only append to dst, and must not call the Journal. If
// enc fails, no record of the batch is written and no seq is used.
//
// Write does not wait for durability (see WaitDurable); it waits only when
// more than 8 MiB are buffered and not yet written (backpressure). When the
// active segment is memory-mapped (fsync never), Write copies the records
// into it before returning, so they are durable when it returns. It is
// safe for concurrent use; seq order is record order. In steady state it
// does not allocate.
func (j *Journal) Write(n int, enc func(i int, seq uint64, dst []byte) ([]byte, error)) (first uint64, err error) {
	if n < 0 {
		return 0, fmt.Errorf("journal: write of %d records", n)
	}
	j.mu.Lock()
	for j.pendBytes >= j.opts.maxPending && !j.closed && j.failed == nil && j.noSpace == nil {
		j.backpressureWaits.Add(1)
		j.notFull.Wait()
	}
	if j.closed {
		j.mu.Unlock()
		return 0, ErrClosed
	}
	if err := firstErr(j.failed, j.noSpace); err != nil {
		j.mu.Unlock()
		return 0, err
	}
	first = j.lastSeq + 1
	if n == 0 {
		j.mu.Unlock()
		return first, nil
	}
	if len(j.pend) == 0 {
		j.pushChunkLocked(false, j.activeBase)
	}
	// Saved for rollback if enc fails.
	var (
		saveChunks = len(j.pend)
		c0         = &j.pend[saveChunks-1]
		saveData   = len(c0.data)
		saveIdx    = len(c0.idx)
		saveLast   = c0.last
		saveOff    = c0.lastOff
		saveBase   = j.activeBase
		saveSize   = j.activeSize
		saveIdxOff = j.lastIdxOff
		savePend   = j.pendBytes
	)
	seq := first
	for i := range n {
		c := &j.pend[len(j.pend)-1]
		start := len(c.data)
		c.data = append(c.data, zeroHeader[:]...)
		out, err := enc(i, seq, c.data)
		if err == nil && len(out) < start+headerSize {
			err = errors.New("enc did not append to dst")
		}
		if err == nil && len(out)-start-headerSize > MaxRecordSize {
			err = fmt.Errorf("%w: %d bytes", ErrRecordTooLarge, len(out)-start-headerSize)
		}
		if err != nil {
			j.pend = j.pend[:saveChunks]
			c0 = &j.pend[saveChunks-1]
			c0.data, c0.idx, c0.last, c0.lastOff = c0.data[:saveData], c0.idx[:saveIdx], saveLast, saveOff
			j.activeBase, j.activeSize, j.lastIdxOff, j.pendBytes = saveBase, saveSize, saveIdxOff, savePend
			j.mu.Unlock()
			return 0, fmt.Errorf("journal: encode record %d: %w", i, err)
		}
		c.data = out
		rec := out[start:]
		putHeader(rec, seq)
		size := int64(len(rec))
		if j.activeSize > 0 && j.activeSize+size > j.opts.SegmentSize {
			// Roll: this record starts a new segment.
			j.pushChunkLocked(true, seq)
			nc := &j.pend[len(j.pend)-1]
			c = &j.pend[len(j.pend)-2]
			nc.data = append(nc.data, c.data[start:]...)
			c.data = c.data[:start]
			j.activeBase, j.activeSize, j.lastIdxOff = seq, 0, 0
			c = nc
		}
		if j.activeSize-j.lastIdxOff >= indexInterval {
			c.idx = append(c.idx, indexEntry{seq: seq, off: j.activeSize})
			j.lastIdxOff = j.activeSize
		}
		c.lastOff = j.activeSize
		j.activeSize += size
		j.pendBytes += size
		c.last = seq
		seq++
	}
	j.lastSeq = seq - 1
	j.lastSeqA.Store(seq - 1)
	j.pendWrites++
	if !j.mapped.Load() || j.opts.Fsync == FsyncAlways {
		// (Mapped with fsync always only in this package's tests: the
		// flusher copies and shares one fsync among writers.)
		j.mu.Unlock()
		j.kickFlusher()
		return first, nil
	}
	if j.flushMu.TryLock() {
		// No write is under way: take the pending records (this write's,
		// and any that came before it) now, without letting go of mu
		// and taking it again in flush (TryLock cannot wait for flushMu
		// while mu is held, so the lock order flushMu → mu stands).
		if !j.flusherGone && !j.retrying {
			j.takeLocked()
			j.mu.Unlock()
			j.writeOutTaken()
			return first, nil
		}
		j.flushMu.Unlock()
	}
	j.mu.Unlock()
	j.copyOut()
	return first, nil
}

func (j *Journal) kickFlusher() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// pushChunkLocked starts a new pending chunk, reusing a spare element's
// buffers when there is one. mu must be held.
func (j *Journal) pushChunkLocked(newSeg bool, base uint64) {
	if len(j.pend) < cap(j.pend) {
		j.pend = j.pend[:len(j.pend)+1]
		c := &j.pend[len(j.pend)-1]
		c.newSeg, c.base, c.last, c.lastOff = newSeg, base, 0, 0
		c.data, c.idx = c.data[:0], c.idx[:0]
		return
	}
	j.pend = append(j.pend, chunk{newSeg: newSeg, base: base, data: make([]byte, 0, 64<<10)})
}

// Append writes payloads as consecutive records and waits until they are
// durable per the fsync policy. It returns the seq of the first. If ctx ends
// first, Append returns ctx's error, but the records stay in the journal and
// will become durable. It is safe for concurrent use.
func (j *Journal) Append(ctx context.Context, payloads ...[]byte) (first uint64, err error) {
	first, err = j.Write(len(payloads), func(i int, _ uint64, dst []byte) ([]byte, error) {
		return append(dst, payloads[i]...), nil
	})
	if err != nil || len(payloads) == 0 {
		return first, err
	}
	return first, j.WaitDurable(ctx, first+uint64(len(payloads))-1)
}

// WaitDurable returns nil once seq is durable per the fsync policy (see the
// package doc), ctx's error if ctx ends first, the journal's sticky I/O error
// if writing failed, or ErrClosed if the journal was closed before seq became
// durable. A seq not yet assigned is waited for like any other. It is safe
// for concurrent use.
func (j *Journal) WaitDurable(ctx context.Context, seq uint64) error {
	if j.durable.Load() >= seq {
		return nil
	}
	// A waiter from a pool, with a channel of its own that is reused, so a
	// publisher waiting for durability allocates nothing.
	w := waiterPool.Get().(*waiter)
	w.seq = seq
	select {
	case <-w.ch: // a stale wake-up from its last use
	default:
	}
	j.chMu.Lock()
	j.waiters = append(j.waiters, w)
	j.listening.Store(true)
	j.chMu.Unlock()
	defer j.dropWaiter(w)
	for {
		if j.durable.Load() >= seq {
			return nil
		}
		if e := j.failErr.Load(); e != nil {
			return *e
		}
		if e := j.spaceErr.Load(); e != nil {
			return *e
		}
		if j.closedA.Load() && isClosed(j.done) {
			return ErrClosed
		}
		select {
		case <-w.ch:
		case <-j.done:
			if j.durable.Load() >= seq {
				return nil
			}
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Sync writes what is buffered and fsyncs the active segment now: with
// FsyncAlways and FsyncInterval (which fsync a segment before the next
// one), every record written before the call then survives a machine
// crash — how a caller that must not wait for the next interval makes
// records durable on disk. With FsyncNever only the active segment's
// records do. It is safe for concurrent use.
func (j *Journal) Sync(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case j.syncReq <- reply:
	case <-j.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waiter is a goroutine blocked in WaitDurable.
type waiter struct {
	seq uint64
	ch  chan struct{} // capacity 1: a wake-up is never lost or blocking
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan struct{}, 1)} }}

// dropWaiter unregisters w (if a wake-up has not already) and pools it.
func (j *Journal) dropWaiter(w *waiter) {
	j.chMu.Lock()
	for i, o := range j.waiters {
		if o == w {
			last := len(j.waiters) - 1
			j.waiters[i] = j.waiters[last]
			j.waiters[last] = nil
			j.waiters = j.waiters[:last]
			break
		}
	}
	j.chMu.Unlock()
	waiterPool.Put(w)
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// LastSeq returns the last assigned seq (0 if the journal is empty). Safe
// for concurrent use.
func (j *Journal) LastSeq() uint64 { return j.lastSeqA.Load() }

// Err returns why Write would fail now, or nil while it can succeed: the
// sticky I/O error (errors.Is ErrIO) that stops writing until a reopen,
// ErrClosed after Close, or, while the disk is full, an error matching
// ErrNoSpace that goes away (Err returns nil again) once the journal could
// write again on its own. It is the journal's health for readiness checks.
// Its text never names a file. Safe for concurrent use.
func (j *Journal) Err() error {
	if e := j.failErr.Load(); e != nil {
		return *e
	}
	if j.closedA.Load() {
		return ErrClosed
	}
	if e := j.spaceErr.Load(); e != nil {
		return *e
	}
	return nil
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// DurableSeq returns the highest seq that is durable per the fsync policy.
// Readers never return records above it. Safe for concurrent use.
func (j *Journal) DurableSeq() uint64 { return j.durable.Load() }

// FirstSeq returns the oldest retained seq, or LastSeq()+1 if the journal
// holds no record. Safe for concurrent use.
func (j *Journal) FirstSeq() uint64 {
	j.segMu.RLock()
	defer j.segMu.RUnlock()
	return j.segs[0].base
}

// Changed returns a channel that is closed the next time DurableSeq advances
// or Err changes (the journal fails, closes, runs out of space or resumes
// after that); call it again for the next change.
// Check the condition you wait for after taking the channel and before
// blocking on it. After Close it returns a closed channel. Safe for
// concurrent use.
func (j *Journal) Changed() <-chan struct{} {
	j.chMu.Lock()
	defer j.chMu.Unlock()
	if j.ch == nil {
		j.ch = make(chan struct{})
		j.listening.Store(true)
	}
	return j.ch
}

// notify wakes everything blocked on Changed, and the WaitDurable callers
// whose record is now durable (or all of them once the journal failed or
// closed). Nothing is allocated when no one is waiting.
func (j *Journal) notify() {
	if !j.listening.Load() {
		// Nobody took Changed's channel or waits in WaitDurable since
		// the last notify: a waiter sets listening before it checks
		// DurableSeq again, and this runs after DurableSeq was stored,
		// so one of the two sees the other.
		return
	}
	durable := j.durable.Load()
	all := j.failErr.Load() != nil || j.spaceErr.Load() != nil || j.closedA.Load()
	j.chMu.Lock()
	if j.ch != nil && j.ch != closedChan {
		close(j.ch)
		j.ch = nil
	}
	kept := j.waiters[:0]
	for _, w := range j.waiters {
		if all || w.seq <= durable {
			select {
			case w.ch <- struct{}{}:
			default:
			}
			continue
		}
		kept = append(kept, w)
	}
	clear(j.waiters[len(kept):])
	j.waiters = kept
	if len(kept) == 0 { // and ch is nil or closed
		j.listening.Store(false)
	}
	j.chMu.Unlock()
}

// Stats returns a snapshot of the journal's counters. Safe for concurrent use.
func (j *Journal) Stats() Stats {
	s := Stats{
		LastSeq:           j.lastSeqA.Load(),
		DurableSeq:        j.durable.Load(),
		Fsyncs:            j.fsyncs.Load(),
		FsyncNanos:        j.fsyncNanos.Load(),
		FsyncP99:          j.fsyncTime.Quantile(0.99),
		Flushes:           j.flushes.Load(),
		WriterFlushes:     j.writerFlushes.Load(),
		BytesWritten:      j.bytesWritten.Load(),
		Truncated:         j.truncated,
		SegmentsDeleted:   j.segmentsDeleted.Load(),
		BackpressureWaits: j.backpressureWaits.Load(),
		NoSpace:           j.spaceErr.Load() != nil,
		NoSpaceEpisodes:   j.noSpaceEpisodes.Load(),
		NoSpaceRetries:    j.noSpaceRetries.Load(),
	}
	j.segMu.RLock()
	s.Segments = len(j.segs)
	s.FirstSeq = j.segs[0].base
	for _, seg := range j.segs {
		s.Bytes += seg.size
	}
	j.segMu.RUnlock()
	return s
}

// Close writes and fsyncs everything buffered (whatever the fsync policy),
// stops the journal's goroutines and closes its files. Records written
// before Close are durable when it returns, unless it returns an error: a
// sticky I/O error, or ErrNoSpace if the disk is still full (the records
// not written by then are lost; none of them was acknowledged). When
// everything was written, Close leaves a clean-shutdown marker that lets
// the next Open tell damage from a torn write. Later calls return the
// first call's result. Safe for concurrent use; Readers must still be
// closed by their owners.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() {
		j.mu.Lock()
		j.closed = true
		j.closedA.Store(true)
		j.notFull.Broadcast()
		j.mu.Unlock()
		close(j.stop)
		j.wg.Wait()
		var errs []error
		cut, err := j.unmapActive()
		if err != nil {
			j.log.Error("journal: close", "err", err)
			errs = append(errs, stickyError(err))
		}
		if e := j.failErr.Load(); e != nil {
			errs = append(errs, *e)
		} else if j.retrying {
			lost := j.lastSeqA.Load() - j.durable.Load()
			j.log.Error("journal: closed while the disk is full; records not written are lost",
				"records", lost, "durable_seq", j.durable.Load())
			errs = append(errs, fmt.Errorf("journal: close: %d records not written: %w", lost, *j.spaceErr.Load()))
		} else if j.written > j.synced || cut {
			if err := j.sync(); err != nil {
				j.log.Error("journal: close", "err", err)
				errs = append(errs, stickyError(err))
			}
		}
		clean := errors.Join(errs...) == nil && j.durable.Load() == j.lastSeqA.Load()
		if err := j.active.Close(); err != nil {
			j.log.Error("journal: close", "err", err)
			errs = append(errs, stickyError(err))
			clean = false
		}
		if j.man != nil {
			if err := j.man.Close(); err != nil {
				j.log.Warn("journal: close manifest", "err", err)
			}
		}
		if clean {
			seg := j.activeSeg
			if err := writeClean(j.opts.Dir, cleanMarker{base: seg.base, size: seg.size, last: seg.last}); err != nil {
				// Not fatal: the next Open recovers as after a crash.
				j.log.Warn("journal: close", "err", err)
			}
		}
		if j.lock != nil {
			errs = append(errs, j.lock.Close())
		}
		j.chMu.Lock()
		if j.ch != nil {
			close(j.ch)
		}
		j.ch = closedChan
		j.chMu.Unlock()
		close(j.done)
		j.closeErr = errors.Join(errs...)
		j.log.Info("journal: closed", "last_seq", j.lastSeqA.Load(), "durable_seq", j.durable.Load())
	})
	return j.closeErr
}
