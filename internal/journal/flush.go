package journal

import (
	"fmt"
	"os"
	"runtime"
	"time"
)

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
			// Let writers that are already runnable (typically the ones the
			// last flush woke) add to the batch first: without this,
			// concurrent appenders get one write(2) (and with FsyncAlways
			// one fsync) for the first few records after each wake-up.
			runtime.Gosched()
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
