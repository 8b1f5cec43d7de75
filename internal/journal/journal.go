package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
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
	RetentionAge   time.Duration // 0 = unlimited; delete whole segments whose newest record is older
	Logger         *slog.Logger  // nil = slog.Default()

	// Test-only knobs, set only by tests in this package.
	splitWrite     time.Duration    // >0: write each flush in two write(2) calls with this sleep between
	now            func() time.Time // clock for retention by age
	retentionEvery time.Duration    // period of the retention check
	maxPending     int64            // backpressure bound
}

// Stats is a snapshot of the journal's counters.
type Stats struct {
	Segments          int    // segment files retained
	Bytes             int64  // bytes in retained segments (written records)
	FirstSeq          uint64 // oldest retained seq (LastSeq+1 if empty)
	LastSeq           uint64 // last assigned seq
	DurableSeq        uint64 // highest durable seq
	Fsyncs            uint64 // fdatasync calls made
	FsyncNanos        int64  // total time spent in them
	Flushes           uint64 // batches written to the OS
	BytesWritten      uint64 // bytes written to the OS since Open
	Truncated         int64  // bytes of torn tail cut at Open
	SegmentsDeleted   uint64 // segments deleted by retention since Open
	BackpressureWaits uint64 // times Write waited for the buffer to drain
}

// chunk is a run of encoded records bound for one segment. newSeg says the
// segment starting at base must be created before writing data.
type chunk struct {
	newSeg bool
	base   uint64
	last   uint64
	data   []byte
	idx    []indexEntry
}

// Journal is a durable, segmented, append-only log of opaque records with
// consecutive sequence numbers starting at 1. All methods are safe for
// concurrent use.
//
// Locks: mu (write side), segMu (segment list) and chMu (Changed channel).
// No goroutine ever holds two of them at once, so there is no lock order to
// respect; keep it that way.
type Journal struct {
	opts Options
	log  *slog.Logger
	lock *os.File

	// mu guards the write side: seq assignment and the pending buffer.
	mu         sync.Mutex
	notFull    sync.Cond // on mu; broadcast when the flusher takes the buffer or on Close/failure
	lastSeq    uint64
	pend       []chunk // records not yet handed to the flusher
	spare      []chunk // the batch the flusher is writing (or wrote last)
	pendBytes  int64
	activeBase uint64 // segment the next record goes to
	activeSize int64  // bytes of that segment, counting pending records
	lastIdxOff int64  // offset of the newest index entry in that segment
	closed     bool
	failed     error // sticky write/fsync error

	lastSeqA atomic.Uint64
	durable  atomic.Uint64
	closedA  atomic.Bool
	failErr  atomic.Pointer[error]

	// chMu guards ch, the channel Changed returns.
	chMu sync.Mutex
	ch   chan struct{}

	// segMu guards segs and the mutable fields of each segment.
	segMu sync.RWMutex
	segs  []*segment

	// Owned by the flusher goroutine (and by Close after it stopped).
	active    *os.File
	activeSeg *segment
	written   uint64 // last seq written to the OS
	synced    uint64 // last seq fsynced

	kick    chan struct{} // writers → flusher
	retKick chan struct{} // flusher → retention
	stop    chan struct{} // closed by Close: goroutines finish
	done    chan struct{} // closed by Close after the final flush
	wg      sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	truncated         int64
	fsyncs            atomic.Uint64
	fsyncNanos        atomic.Int64
	flushes           atomic.Uint64
	bytesWritten      atomic.Uint64
	segmentsDeleted   atomic.Uint64
	backpressureWaits atomic.Uint64
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Open opens (creating if needed) the journal in opts.Dir and recovers it:
// every segment is scanned, CRCs and seq continuity verified, the sparse
// index built, and a torn tail of the last segment cut (with a WARN log).
// Any other damage fails Open with a *CorruptError.
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
		opts.now = time.Now
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
		retKick: make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
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

// recover scans the segments, cuts a torn tail and opens the active segment.
func (j *Journal) recover() error {
	start := time.Now()
	dir := j.opts.Dir
	bases, err := listSegments(dir)
	if err != nil {
		return err
	}
	var total int64
	for i, base := range bases {
		path := joinPath(dir, base)
		last := i == len(bases)-1
		seg, torn, err := recoverSegment(path, base, last)
		if err != nil {
			return err
		}
		if i > 0 {
			if prev := j.segs[i-1]; base != prev.last+1 {
				return &CorruptError{File: path, Offset: 0, Reason: fmt.Sprintf(
					"seq discontinuity: segment starts at seq %d, previous segment %s ends at seq %d", base, prev.path, prev.last)}
			}
		}
		if torn.bytes > 0 {
			j.truncated += torn.bytes
			j.log.Warn("journal: truncated torn tail", "file", path, "offset", seg.size,
				"bytes", torn.bytes, "reason", torn.why)
		}
		total += seg.size
		j.segs = append(j.segs, seg)
	}
	if len(j.segs) == 0 {
		path := joinPath(dir, 1)
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("journal: create segment: %w", err)
		}
		f.Close()
		if err := syncDir(dir); err != nil {
			return err
		}
		j.segs = append(j.segs, &segment{base: 1, path: path, last: 0, modTime: j.opts.now()})
	}
	seg := j.segs[len(j.segs)-1]
	f, err := os.OpenFile(seg.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("journal: open active segment: %w", err)
	}
	j.active, j.activeSeg = f, seg
	j.lastSeq = seg.last
	j.lastSeqA.Store(seg.last)
	j.durable.Store(seg.last)
	j.written, j.synced = seg.last, seg.last
	j.activeBase, j.activeSize = seg.base, seg.size
	if n := len(seg.index); n > 0 {
		j.lastIdxOff = seg.index[n-1].off
	}
	j.log.Info("journal: opened", "segments", len(j.segs), "bytes", total,
		"first_seq", j.segs[0].base, "last_seq", seg.last, "truncated_bytes", j.truncated,
		"fsync", j.opts.Fsync.String(), "scan", time.Since(start))
	return nil
}

type tornTail struct {
	bytes int64
	why   string
}

// recoverSegment scans one segment file and, if it is the last one and ends
// in a torn record, cuts the file back to the last whole record.
func recoverSegment(path string, base uint64, last bool) (*segment, tornTail, error) {
	flag := os.O_RDONLY
	if last {
		flag = os.O_RDWR // a torn tail may have to be cut
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, tornTail{}, fmt.Errorf("journal: open segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, tornTail{}, fmt.Errorf("journal: stat segment: %w", err)
	}
	res, err := scanSegment(f, fi.Size(), path, base, last)
	if err != nil {
		return nil, tornTail{}, err
	}
	if res.torn > 0 {
		if err := f.Truncate(res.size); err != nil {
			return nil, tornTail{}, fmt.Errorf("journal: truncate torn tail of %s: %w", path, err)
		}
		if err := datasync(f); err != nil {
			return nil, tornTail{}, fmt.Errorf("journal: sync %s: %w", path, err)
		}
	}
	seg := &segment{base: base, path: path, size: res.size, last: res.last, index: res.index, modTime: fi.ModTime()}
	return seg, tornTail{bytes: res.torn, why: res.tornWhy}, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("journal: open dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("journal: sync dir %s: %w", dir, err)
	}
	return nil
}

var zeroHeader [headerSize]byte

// Write assigns n consecutive seqs first..first+n-1 and appends one record
// per seq, whose payload enc appends to dst (returning the extended slice).
// enc is called with the journal's write lock held, in order i = 0..n-1: it
// must be quick, must only append to dst, and must not call the Journal. If
// enc fails, no record of the batch is written and no seq is used.
//
// Write does not wait for durability (see WaitDurable); it waits only when
// more than 8 MiB are buffered and not yet written (backpressure). It is safe
// for concurrent use; seq order is record order. In steady state it does not
// allocate.
func (j *Journal) Write(n int, enc func(i int, seq uint64, dst []byte) ([]byte, error)) (first uint64, err error) {
	if n < 0 {
		return 0, fmt.Errorf("journal: write of %d records", n)
	}
	j.mu.Lock()
	for j.pendBytes >= j.opts.maxPending && !j.closed && j.failed == nil {
		j.backpressureWaits.Add(1)
		j.notFull.Wait()
	}
	if j.closed {
		j.mu.Unlock()
		return 0, ErrClosed
	}
	if j.failed != nil {
		err := j.failed
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
			c0.data, c0.idx, c0.last = c0.data[:saveData], c0.idx[:saveIdx], saveLast
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
		j.activeSize += size
		j.pendBytes += size
		c.last = seq
		seq++
	}
	j.lastSeq = seq - 1
	j.lastSeqA.Store(seq - 1)
	j.mu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return first, nil
}

// pushChunkLocked starts a new pending chunk, reusing a spare element's
// buffers when there is one. mu must be held.
func (j *Journal) pushChunkLocked(newSeg bool, base uint64) {
	if len(j.pend) < cap(j.pend) {
		j.pend = j.pend[:len(j.pend)+1]
		c := &j.pend[len(j.pend)-1]
		c.newSeg, c.base, c.last = newSeg, base, 0
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
	for {
		if j.durable.Load() >= seq {
			return nil
		}
		if e := j.failErr.Load(); e != nil {
			return *e
		}
		ch := j.Changed()
		if j.durable.Load() >= seq {
			return nil
		}
		if j.closedA.Load() && isClosed(j.done) {
			return ErrClosed
		}
		select {
		case <-ch:
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
// (or when the journal fails or closes); call it again for the next change.
// Check the condition you wait for after taking the channel and before
// blocking on it. After Close it returns a closed channel. Safe for
// concurrent use.
func (j *Journal) Changed() <-chan struct{} {
	j.chMu.Lock()
	defer j.chMu.Unlock()
	if j.ch == nil {
		j.ch = make(chan struct{})
	}
	return j.ch
}

// notify wakes everything blocked on Changed. Nothing is allocated when no
// one is waiting.
func (j *Journal) notify() {
	j.chMu.Lock()
	if j.ch != nil && j.ch != closedChan {
		close(j.ch)
		j.ch = nil
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
		Flushes:           j.flushes.Load(),
		BytesWritten:      j.bytesWritten.Load(),
		Truncated:         j.truncated,
		SegmentsDeleted:   j.segmentsDeleted.Load(),
		BackpressureWaits: j.backpressureWaits.Load(),
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
// before Close are durable when it returns. Later calls return the first
// call's result. Safe for concurrent use; Readers must still be closed by
// their owners.
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
		if e := j.failErr.Load(); e == nil && j.written > j.synced {
			errs = append(errs, j.sync())
		}
		errs = append(errs, j.active.Close())
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

// flushLoop is the single writer of segment files: it takes the pending
// buffer, writes it, fsyncs per policy and advances DurableSeq.
func (j *Journal) flushLoop() {
	defer j.wg.Done()
	var tick <-chan time.Time
	if j.opts.Fsync == FsyncInterval {
		t := time.NewTicker(j.opts.FsyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-j.kick:
			j.flush()
		case <-tick:
			if j.written > j.synced && j.failErr.Load() == nil {
				if err := j.sync(); err != nil {
					j.fail(err)
				}
			}
		case <-j.stop:
			j.flush()
			return
		}
	}
}

// flush writes the pending buffer. Flusher goroutine only.
func (j *Journal) flush() {
	j.mu.Lock()
	if len(j.pend) == 0 || j.failed != nil {
		j.mu.Unlock()
		return
	}
	batch := j.pend
	j.pend = j.spare[:0]
	j.spare = batch
	j.pendBytes = 0
	j.notFull.Broadcast()
	j.mu.Unlock()

	var last uint64
	for i := range batch {
		c := &batch[i]
		if c.newSeg {
			if err := j.roll(c.base); err != nil {
				j.fail(err)
				return
			}
		}
		if len(c.data) == 0 {
			continue
		}
		if err := j.writeChunk(c); err != nil {
			j.fail(err)
			return
		}
		last = c.last
		j.written = last // so that a roll in this batch fsyncs this chunk
	}
	if last == 0 {
		return
	}
	j.flushes.Add(1)
	if j.opts.Fsync == FsyncAlways {
		if err := j.sync(); err != nil {
			j.fail(err)
			return
		}
	}
	j.durable.Store(last)
	j.notify()
}

func (j *Journal) writeChunk(c *chunk) error {
	seg := j.activeSeg
	off := seg.size
	data := c.data
	if d := j.opts.splitWrite; d > 0 && len(data) > 1 {
		half := len(data) / 2
		if _, err := j.active.WriteAt(data[:half], off); err != nil {
			return fmt.Errorf("journal: write %s: %w", seg.path, err)
		}
		time.Sleep(d)
		data, off = data[half:], off+int64(half)
	}
	if _, err := j.active.WriteAt(data, off); err != nil {
		return fmt.Errorf("journal: write %s: %w", seg.path, err)
	}
	j.bytesWritten.Add(uint64(len(c.data)))
	now := j.opts.now()
	j.segMu.Lock()
	seg.size += int64(len(c.data))
	seg.last = c.last
	seg.index = append(seg.index, c.idx...)
	seg.modTime = now
	j.segMu.Unlock()
	return nil
}

// roll makes the segment starting at base the active one. Unless the policy
// is never, the old segment is fsynced first so that a later segment never
// survives a crash that an earlier one does not.
func (j *Journal) roll(base uint64) error {
	if j.opts.Fsync != FsyncNever && j.written > j.synced {
		if err := j.sync(); err != nil {
			return err
		}
	}
	if err := j.active.Close(); err != nil {
		return fmt.Errorf("journal: close %s: %w", j.activeSeg.path, err)
	}
	path := joinPath(j.opts.Dir, base)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		// Keep j.active valid for Close.
		if f2, err2 := os.OpenFile(j.activeSeg.path, os.O_RDWR, 0); err2 == nil {
			j.active = f2
		}
		return fmt.Errorf("journal: create segment: %w", err)
	}
	j.active = f
	if j.opts.Fsync != FsyncNever {
		if err := syncDir(j.opts.Dir); err != nil {
			return err
		}
	}
	seg := &segment{base: base, path: path, last: base - 1, modTime: j.opts.now()}
	j.segMu.Lock()
	j.segs = append(j.segs, seg)
	j.segMu.Unlock()
	j.activeSeg = seg
	select {
	case j.retKick <- struct{}{}:
	default:
	}
	return nil
}

// sync fdatasyncs the active segment. Flusher goroutine (or Close) only.
func (j *Journal) sync() error {
	start := time.Now()
	err := datasync(j.active)
	j.fsyncNanos.Add(int64(time.Since(start)))
	j.fsyncs.Add(1)
	if err != nil {
		return fmt.Errorf("journal: fsync %s: %w", j.activeSeg.path, err)
	}
	j.synced = j.written
	return nil
}

// fail makes err sticky: the journal accepts no more writes (an fsync error
// cannot be retried safely); reopen it to recover.
func (j *Journal) fail(err error) {
	j.log.Error("journal: write failed; journal is now read-only until reopened", "err", err)
	j.failErr.Store(&err)
	j.mu.Lock()
	j.failed = err
	j.notFull.Broadcast()
	j.mu.Unlock()
	j.notify()
}

// retentionLoop applies retention after each roll and periodically.
func (j *Journal) retentionLoop() {
	defer j.wg.Done()
	t := time.NewTicker(j.opts.retentionEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-j.retKick:
		case <-j.stop:
			return
		}
		j.enforceRetention()
	}
}

// enforceRetention deletes whole oldest segments (never the active one)
// while the total exceeds RetentionBytes or their newest record is older
// than RetentionAge.
func (j *Journal) enforceRetention() {
	maxBytes, maxAge := j.opts.RetentionBytes, j.opts.RetentionAge
	if maxBytes <= 0 && maxAge <= 0 {
		return
	}
	now := j.opts.now()
	j.segMu.Lock()
	var total int64
	for _, s := range j.segs {
		total += s.size
	}
	k := 0
	for k < len(j.segs)-1 {
		s := j.segs[k]
		if (maxBytes > 0 && total > maxBytes) || (maxAge > 0 && now.Sub(s.modTime) > maxAge) {
			total -= s.size
			k++
			continue
		}
		break
	}
	victims := slices.Clone(j.segs[:k])
	j.segs = slices.Delete(j.segs, 0, k)
	first := j.segs[0].base
	j.segMu.Unlock()
	for _, s := range victims {
		if err := os.Remove(s.path); err != nil {
			j.log.Error("journal: retention: remove segment", "file", s.path, "err", err)
			continue
		}
		j.segmentsDeleted.Add(1)
	}
	if len(victims) > 0 {
		j.log.Info("journal: retention deleted segments", "segments", len(victims), "first_seq", first)
	}
}
