package journal

import (
	"encoding/binary"
	"fmt"
	"log/slog"
)

// mapSlack is the space preallocated past SegmentSize, so that a record in
// a mapped segment always ends before the end of the file: recovery
// recognises a copy cut short by the zeros that follow it (scanSegment).
const mapSlack = 4096

// mapCopyMax is the largest chunk always copied into a mapped segment; a
// larger one is written with pwrite(2) (into the same preallocated file),
// which costs one system call but no write fault per page touched, the
// cheaper of the two past a few KiB (BenchmarkWriteWaitOne, batch=100) —
// unless the toucher has touched its pages already (mapTouchedMax).
const mapCopyMax = 4 << 10

// mapTouchedMax is the largest chunk copied into a mapped segment when the
// toucher has touched every page it lands on: then the copy is a plain
// memory copy, and the pages' cost was paid on the toucher's thread
// (BenchmarkWriteWaitOne mapped, 1 appender × 100: 6.9M → 9.4M events/s;
// BenchmarkRow1Batch in internal/propagate, batch=100: +17% events/s to 1
// subscriber, +25% to 10). Such a chunk's pwrite asks the toucher to go
// ahead of it. Larger chunks (HTTP ingest batches of 1000 events, ~200
// KiB) keep pwrite and leave the toucher idle: copying them and touching
// ahead of them took processor time from the ingest's decoding (bench/
// row 2 ingest −20%).
const mapTouchedMax = 64 << 10

// prefaultStep is how much of a mapped segment a writer faults in at once
// when its copy reaches pages not yet faulted in.
const prefaultStep = 256 << 10

// touchAhead is how far past the pages a writer reaches the toucher is
// asked to touch: about a millisecond of a lone publisher's events, so
// that the toucher, which runs when a processor is free, stays ahead of
// it (asked 256 KiB past them and touching page by page, it fell behind:
// a publisher of single events faulted in pages itself every 256 KiB,
// 10 µs at the median, 58 µs at the 90th percentile).
const touchAhead = 4 * prefaultStep

// mapEveryPolicy maps active segments whatever the fsync policy; set only
// by this package's tests, to run the whole suite over mapped segments.
var mapEveryPolicy bool

// mapActive maps the active segment for writing when the policy allows it
// (FsyncNever; see the package doc) and the file system can preallocate
// it. Otherwise, or on any failure, the segment is written with pwrite(2).
// flushMu must be held (or the journal not yet running).
func (j *Journal) mapActive() {
	if (j.opts.Fsync != FsyncNever && !mapEveryPolicy) || j.opts.noMap || j.amap != nil {
		return
	}
	seg := j.activeSeg
	if seg.size >= j.opts.SegmentSize {
		return // the next record starts a new segment
	}
	b, err := mapFile(j.active, seg.size, j.opts.SegmentSize+mapSlack)
	if err != nil {
		j.mapped.Store(false)
		if isNoSpace(err) {
			// Not worth a line: writing the segment fails the same way
			// and says so.
			return
		}
		j.limited.Log(slog.LevelInfo, "journal: segment not memory-mapped; writing with pwrite", "file", seg.path, "err", err)
		return
	}
	seg.end.Store(seg.size)
	seg.prealloc.Store(true)
	j.amap = b
	j.popEnd = 0
	j.touch = startToucher(b, seg.size)
	j.touch.ask(seg.size + touchAhead)
	j.mapped.Store(true)
}

// copyOut writes the pending records into the mapped active segment from
// the calling Write: a copy into memory, so each writer does it itself
// instead of handing its records to the flusher and waiting to be woken.
// A writer holding flushMu meanwhile may have taken this one's records
// with its own; then there is nothing left to copy.
func (j *Journal) copyOut() {
	j.flushMu.Lock()
	if j.flusherGone || j.retrying {
		// Close's final flush or the retry timer writes them.
		j.flushMu.Unlock()
		j.kickFlusher()
		return
	}
	before := j.flushes.Load()
	j.flush()
	j.writerFlushes.Add(j.flushes.Load() - before)
	j.releaseFlush()
}

// writeOutTaken writes the batch Write took (takeLocked) from the writer,
// as copyOut does. flushMu must be held; it is released.
func (j *Journal) writeOutTaken() {
	before := j.flushes.Load()
	if err := j.writeBatch(j.spare); err != nil {
		j.writeFailed(err)
	}
	j.writerFlushes.Add(j.flushes.Load() - before)
	j.releaseFlush()
}

// releaseFlush releases flushMu after a writer wrote records out, and
// kicks the flusher to arm its retry timer if the disk is full.
func (j *Journal) releaseFlush() {
	retrying := j.retrying
	j.flushMu.Unlock()
	if retrying {
		j.kickFlusher() // arms the retry timer
	}
}

// unmapActive unmaps the active segment, if mapped, and cuts the file to
// the records written (the rest was preallocated). It reports whether the
// file was cut, which needs an fsync for the size to be durable. flushMu
// must be held (or the flusher stopped).
func (j *Journal) unmapActive() (cut bool, err error) {
	if j.amap == nil {
		return false, nil
	}
	if j.touch != nil {
		j.touch.close()
		j.touch = nil
	}
	if err := unmapFile(j.amap); err != nil {
		j.log.Warn("journal: munmap", "file", j.activeSeg.path, "err", err)
	}
	j.amap = nil
	j.mapped.Store(false)
	if err := j.active.Truncate(j.activeSeg.size); err != nil {
		return false, fmt.Errorf("journal: truncate %s: %w", j.activeSeg.path, err)
	}
	return true, nil
}

// copyForward copies src into dst front to back, 8 bytes per store, so
// that a process killed while copying leaves a prefix of src in dst and
// dst's old bytes (the preallocated zeros) after it: the shape recovery
// cuts as torn. copy (memmove) makes no such promise; it may store the end
// of a block before its start.
func copyForward(dst, src []byte) {
	dst = dst[:len(src)]
	i := 0
	for ; i+8 <= len(src); i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(src[i:]))
	}
	for ; i < len(src); i++ {
		dst[i] = src[i]
	}
}
