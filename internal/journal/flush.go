package journal

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"
)

// Bounds of the delay between two attempts to write a batch that failed for
// lack of space; it doubles after each failed attempt.
const (
	minRetryDelay = 20 * time.Millisecond
	maxRetryDelay = time.Second
)

// syncMark is the state of the active segment at the last point where
// everything written to it was fsynced (the start of the batch or the last
// roll in it): pos is the batch chunk written first after it. With
// FsyncAlways, a failed fsync rewinds the segment to it and writes again
// from pos, from memory.
type syncMark struct {
	pos     int
	size    int64
	last    uint64
	lastOff int64
	nidx    int
}

// syncError is an fsync failure, as opposed to a write(2) failure.
type syncError struct{ err error }

func (e *syncError) Error() string { return e.err.Error() }
func (e *syncError) Unwrap() error { return e.err }

// flushLoop is the single writer of segment files: it takes the pending
// buffer, writes it, fsyncs per policy and advances DurableSeq. While the
// disk is full it retries the interrupted batch with backoff.
func (j *Journal) flushLoop() {
	defer j.wg.Done()
	var tick <-chan time.Time
	if j.opts.Fsync == FsyncInterval {
		t := time.NewTicker(j.opts.FsyncInterval)
		defer t.Stop()
		tick = t.C
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var retryC <-chan time.Time
	for {
		select {
		case <-j.kick:
			// Let writers that are already runnable (typically the ones the
			// last flush woke) add to the batch first: without this,
			// concurrent appenders get one write(2) (and with FsyncAlways
			// one fsync) for the first few records after each wake-up.
			runtime.Gosched()
			if !j.flushMu.TryLock() {
				continue // a writer is writing out; it kicks again if records remain
			}
			if !j.retrying { // else Write refuses meanwhile; the retry timer is armed
				j.flush()
			}
		case <-retryC:
			retryC = nil
			j.flushMu.Lock()
			j.flush()
		case <-tick:
			j.flushMu.Lock()
			if !j.retrying && j.written > j.synced && j.failErr.Load() == nil {
				if err := j.sync(); err != nil {
					j.fail(err)
				}
			}
		case reply := <-j.syncReq:
			j.flushMu.Lock()
			reply <- j.syncNow()
		case <-j.stop:
			j.flushMu.Lock()
			j.flush()
			j.flusherGone = true
			j.flushMu.Unlock()
			return
		}
		retrying, delay := j.retrying, j.retryDelay
		j.flushMu.Unlock()
		if retrying && retryC == nil {
			retry.Reset(delay)
			retryC = retry.C
		}
	}
}

// WriteOut writes the records buffered so far from the calling goroutine
// instead of leaving them to the flusher, when they are one Write's
// records, no other writer waits for its records and no write is under
// way; otherwise the flusher (or the writer under way) writes them,
// sharing one write(2) among concurrent writers.
// With FsyncNever and FsyncInterval a written record is durable, so a lone
// publisher calling WriteOut after Write finds its records durable without
// a hand-off to the flusher and back. With FsyncAlways it does nothing:
// the flusher's group commit shares one fsync among concurrent writers.
func (j *Journal) WriteOut() {
	if j.opts.Fsync == FsyncAlways {
		return
	}
	j.mu.Lock()
	alone := j.pendWrites == 1
	j.mu.Unlock()
	if alone {
		// Writers waiting for their records are the concurrency the
		// flusher batches for: one write(2) for all of them.
		j.chMu.Lock()
		alone = len(j.waiters) == 0
		j.chMu.Unlock()
	}
	if !alone || !j.flushMu.TryLock() {
		return
	}
	if !j.flusherGone && !j.retrying {
		before := j.flushes.Load()
		j.flush()
		j.writerFlushes.Add(j.flushes.Load() - before)
	}
	retrying := j.retrying
	j.flushMu.Unlock()
	j.mu.Lock()
	more := len(j.pend) > 0
	j.mu.Unlock()
	if retrying || more {
		// Records that came while this goroutine held flushMu, or a
		// retry timer to arm: the flusher's job.
		j.kickFlusher()
	}
}

// flush writes pending records: first the batch that a full disk
// interrupted, if any, then the pending buffer. flushMu must be held.
func (j *Journal) flush() {
	for {
		retried := j.retrying
		if retried {
			j.noSpaceRetries.Add(1)
			if err := j.truncateActive(); err != nil {
				j.writeFailed(err)
				return
			}
		} else {
			j.mu.Lock()
			if len(j.pend) == 0 || j.failed != nil {
				j.mu.Unlock()
				return
			}
			j.takeLocked()
			j.mu.Unlock()
		}
		if err := j.writeBatch(j.spare); err != nil {
			j.writeFailed(err)
			return
		}
		if !retried {
			return
		}
		j.leaveNoSpace()
		// Records buffered before writes were refused follow at once.
	}
}

// takeLocked makes the pending records the batch to write (j.spare) and
// starts an empty pending buffer. mu and flushMu must be held, and the
// last batch written whole (not retrying).
func (j *Journal) takeLocked() {
	batch := j.pend
	j.pend = j.spare[:0]
	j.pendWrites = 0
	j.spare = batch
	j.pendBytes = 0
	j.notFull.Broadcast()
	j.batchPos = 0
	j.mark = j.markAt(0)
}

// writeBatch writes batch from chunk j.batchPos on, fsyncs per policy and
// advances DurableSeq. On error, j.batchPos is the chunk that failed.
func (j *Journal) writeBatch(batch []chunk) error {
	for ; j.batchPos < len(batch); j.batchPos++ {
		c := &batch[j.batchPos]
		if c.newSeg && j.activeSeg.base != c.base {
			if err := j.roll(c.base); err != nil {
				return err
			}
			j.mark = j.markAt(j.batchPos)
		}
		if len(c.data) == 0 {
			continue
		}
		if err := j.writeChunk(c); err != nil {
			return err
		}
		j.written = c.last // so that a roll in this batch fsyncs this chunk
	}
	var last uint64
	for i := range batch {
		if len(batch[i].data) > 0 {
			last = batch[i].last
		}
	}
	if last == 0 {
		return nil
	}
	j.flushes.Add(1)
	if j.opts.Fsync == FsyncAlways {
		if err := j.sync(); err != nil {
			return err
		}
	}
	j.durable.Store(last)
	j.notify()
	return nil
}

// markAt records the active segment's state as a sync mark before chunk
// pos. flushMu must be held (its holder is the only writer of these fields).
func (j *Journal) markAt(pos int) syncMark {
	s := j.activeSeg
	return syncMark{pos: pos, size: s.size, last: s.last, lastOff: s.lastOff, nidx: len(s.index)}
}

// writeFailed handles a failed write, fsync or roll. Running out of space is
// retried (see retry) when no acknowledged data can have been lost: a
// write(2) or segment creation that failed for lack of space wrote nothing
// that counts, and with FsyncAlways everything a failed fsync covered is
// still in memory. Anything else is sticky.
func (j *Journal) writeFailed(err error) {
	var se *syncError
	syncFailed := errors.As(err, &se)
	if !isNoSpace(err) || (syncFailed && j.opts.Fsync != FsyncAlways) {
		j.fail(err)
		return
	}
	if syncFailed {
		// The pages a failed fsync covered are in an unknown state: cut
		// back to the last successful fsync and write them again.
		m := j.mark
		j.segMu.Lock()
		j.activeSeg.size, j.activeSeg.last, j.activeSeg.lastOff = m.size, m.last, m.lastOff
		j.activeSeg.end.Store(m.size)
		j.activeSeg.index = j.activeSeg.index[:m.nidx]
		j.segMu.Unlock()
		j.batchPos = m.pos
		j.written = j.synced
	}
	// Free what a partial write allocated; the retry does it again if this
	// fails.
	_ = j.truncateActive()
	j.enterNoSpace(err)
}

// truncateActive cuts the active segment to its last whole record written,
// dropping what a failed write left after it.
func (j *Journal) truncateActive() error {
	if j.amap != nil {
		_, err := j.unmapActive() // the rest of the segment is written with pwrite(2)
		return err
	}
	if err := j.active.Truncate(j.activeSeg.size); err != nil {
		return fmt.Errorf("journal: truncate %s: %w", j.activeSeg.path, err)
	}
	return nil
}

// enterNoSpace makes Write refuse with ErrNoSpace, fails the WaitDurable
// calls of records not yet durable, and arms the retry (first call), or
// backs off (later calls).
func (j *Journal) enterNoSpace(err error) {
	if j.retrying {
		j.retryDelay = min(2*j.retryDelay, maxRetryDelay)
		j.limited.Log(slog.LevelWarn, "journal: still no space left on device", "err", err,
			"retries", j.noSpaceRetries.Load()-j.retriesAtStart)
		return
	}
	pub := noSpaceError(err)
	j.retrying = true
	j.retryDelay = minRetryDelay
	j.noSpaceSince = time.Now()
	j.retriesAtStart = j.noSpaceRetries.Load()
	j.noSpaceEpisodes.Add(1)
	j.log.Error("journal: no space left on device; refusing writes and retrying until space is freed",
		"err", err, "durable_seq", j.durable.Load(), "last_seq", j.lastSeqA.Load())
	j.mu.Lock()
	j.noSpace = pub
	j.notFull.Broadcast()
	j.mu.Unlock()
	j.spaceErr.Store(&pub)
	j.notify()
}

// leaveNoSpace accepts writes again after a retry wrote everything.
func (j *Journal) leaveNoSpace() {
	j.retrying = false
	j.mu.Lock()
	j.noSpace = nil
	j.mu.Unlock()
	j.spaceErr.Store(nil)
	j.limited.Flush()
	j.log.Info("journal: space available again; writes resumed",
		"after", time.Since(j.noSpaceSince).Round(time.Millisecond),
		"retries", j.noSpaceRetries.Load()-j.retriesAtStart, "durable_seq", j.durable.Load())
	j.notify()
}

func (j *Journal) writeChunk(c *chunk) error {
	seg := j.activeSeg
	off := seg.size
	data := c.data
	end := off + int64(len(data))
	if m := j.amap; m != nil && end <= int64(len(m)) && (len(data) <= mapCopyMax || len(data) <= mapTouchedMax && j.touch.touched(end)) {
		if d := j.opts.splitWrite; d > 0 && len(data) > 1 {
			half := len(data) / 2
			copyForward(m[off:], data[:half])
			time.Sleep(d)
			data, off = data[half:], off+int64(half)
		}
		if end := off + int64(len(data)); end > j.popEnd {
			// The next pages: the toucher is asked to go on past them,
			// and those it has not touched yet are faulted in here in
			// one call rather than one write fault per page.
			j.popEnd = min((end+prefaultStep)&^(prefaultStep-1), int64(len(m)))
			from := off &^ (4096 - 1)
			if j.touch != nil {
				j.touch.ask(j.popEnd + touchAhead)
				from = max(from, j.touch.at.Load())
			}
			if from < j.popEnd && !j.popOff {
				if err := prefault(m[from:j.popEnd]); err != nil {
					j.popOff = true // not supported here (before Linux 5.14)
				}
			}
		}
		copyForward(m[off:], data)
		if len(data) > mapCopyMax {
			j.copiedTouched++
		}
	} else {
		if m != nil && j.touch != nil && len(data) <= mapTouchedMax {
			// Let the toucher get ahead, so that the next chunks find
			// their pages touched and are copied.
			j.touch.ask(end + touchAhead)
		}
		if err := j.writeAt(data, off); err != nil {
			return err
		}
	}
	j.bytesWritten.Add(uint64(len(c.data)))
	j.segMu.Lock()
	seg.size += int64(len(c.data))
	seg.end.Store(seg.size)
	seg.last, seg.lastOff = c.last, c.lastOff
	seg.index = append(seg.index, c.idx...)
	j.segMu.Unlock()
	return nil
}

// writeAt writes data at off in the active segment with pwrite(2).
func (j *Journal) writeAt(data []byte, off int64) error {
	seg := j.activeSeg
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
	return nil
}

// roll makes the segment starting at base the active one. Unless the policy
// is never, the old segment is fsynced first so that a later segment never
// survives a crash that an earlier one does not. On error the old segment
// stays active and no new segment exists, so the roll can be retried.
func (j *Journal) roll(base uint64) error {
	cut, err := j.unmapActive()
	if err != nil {
		return err
	}
	if j.opts.Fsync != FsyncNever && (j.written > j.synced || cut) {
		if err := j.sync(); err != nil {
			return err
		}
	}
	path := joinPath(j.opts.Dir, base)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("journal: create segment: %w", err)
	}
	if j.opts.Fsync != FsyncNever {
		if err := syncDir(j.opts.Dir); err != nil {
			f.Close()
			os.Remove(path)
			return err
		}
	}
	if err := j.active.Close(); err != nil {
		// Its data was fsynced above (unless the policy is never).
		j.limited.Log(slog.LevelError, "journal: close segment", "file", j.activeSeg.path, "err", err)
	}
	// The sealed segment's index file lets the next Open skip scanning it.
	// Failing to write it costs only that scan.
	if err := writeIndex(j.activeSeg.path, j.activeSeg.describe()); err != nil {
		j.limited.Log(slog.LevelWarn, "journal: seal segment", "file", j.activeSeg.path, "err", err)
	}
	// A segment's modification time is taken when it is sealed, not on
	// every write (a clock read per unbatched publish): it is the time of
	// its newest record or later (the journal may have been idle since),
	// so retention by age may keep it longer, never shorter.
	now := j.opts.now()
	j.segMu.Lock()
	j.activeSeg.modTime = now
	j.segMu.Unlock()
	// Its manifest entry lets the next Open skip even the index file. The
	// segment was fsynced above unless the policy is never.
	j.appendManifest(entryFor(j.activeSeg, indexCRC(j.activeSeg.index), j.opts.Fsync != FsyncNever))
	j.active = f
	seg := &segment{base: base, path: path, last: base - 1, modTime: now}
	j.segMu.Lock()
	j.segs = append(j.segs, seg)
	j.segMu.Unlock()
	j.activeSeg = seg
	j.mapActive()
	select {
	case j.retKick <- struct{}{}:
	default:
	}
	return nil
}

// syncNow writes the pending records and fsyncs them (Sync). flushMu must
// be held.
func (j *Journal) syncNow() error {
	if !j.retrying {
		j.flush()
	}
	if e := j.failErr.Load(); e != nil {
		return *e
	}
	if e := j.spaceErr.Load(); e != nil {
		return *e
	}
	if j.written > j.synced {
		if err := j.sync(); err != nil {
			j.fail(err)
			return err
		}
	}
	return nil
}

// sync fdatasyncs the active segment. flushMu must be held (or Close,
// after the flusher stopped). Its error is a *syncError.
func (j *Journal) sync() error {
	start := time.Now()
	var err error
	if j.opts.syncFault != nil {
		err = j.opts.syncFault(j.active)
	}
	if err == nil {
		err = datasync(j.active)
	}
	took := int64(time.Since(start))
	j.fsyncNanos.Add(took)
	j.fsyncTime.Observe(took)
	j.fsyncs.Add(1)
	if err != nil {
		return &syncError{fmt.Errorf("journal: fsync %s: %w", j.activeSeg.path, err)}
	}
	j.synced = j.written
	return nil
}

// fail makes err sticky: the journal accepts no more writes (an fsync error
// cannot be retried safely); reopen it to recover. Callers see the error
// without file names; the log has them.
func (j *Journal) fail(err error) {
	j.log.Error("journal: write failed; journal is now read-only until reopened", "err", err)
	pub := stickyError(err)
	j.retrying = false
	j.failErr.Store(&pub)
	j.mu.Lock()
	j.failed = pub
	j.notFull.Broadcast()
	j.mu.Unlock()
	j.notify()
}
