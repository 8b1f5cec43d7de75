package journal

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/semprop/semprop/internal/atomicfile"
)

// recover describes the sealed segments (from the manifest, else their
// index files, else by scanning them), checks the last one against the
// clean-shutdown marker or else cuts a torn tail, brings the manifest up to
// date and opens the active segment.
func (j *Journal) recover() error {
	start := time.Now()
	dir := j.opts.Dir
	bases, strays, err := listDir(dir)
	if err != nil {
		return err
	}
	clean, wasClean, err := readClean(dir)
	if err != nil {
		return err
	}
	if wasClean {
		if err := checkCleanSegments(dir, bases, clean); err != nil {
			return err
		}
	}
	for _, name := range strays {
		os.Remove(filepath.Join(dir, name))
	}
	man, err := readManifest(dir, j.log)
	if err != nil {
		return err
	}
	sealed := j.loadSealed(dir, bases, man)
	var total int64
	scanned, fromManifest := 0, 0
	for i, base := range bases {
		path := joinPath(dir, base)
		last := i == len(bases)-1
		// The last segment is always scanned (it is checked against the
		// clean-shutdown marker, or its torn tail is cut), and only once
		// every sealed one checked out.
		var r sealedResult
		if last {
			r.seg, r.torn, r.scanned, r.err = recoverSegment(path, base, true, !wasClean, false, j.log)
		} else {
			r = sealed[i]
		}
		seg, torn, didScan, err := r.seg, r.torn, r.scanned, r.err
		if err != nil {
			return err
		}
		if didScan {
			scanned++
		}
		if r.manifest {
			fromManifest++
		}
		j.scannedAtOpen, j.manifestAtOpen = scanned, fromManifest
		if last && wasClean && (seg.size != clean.size || seg.last != clean.last) {
			return &CorruptError{File: path, Offset: min(seg.size, clean.size), Reason: fmt.Sprintf(
				"segment holds %d bytes up to seq %d, but the journal was closed cleanly with %d bytes up to seq %d",
				seg.size, seg.last, clean.size, clean.last)}
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
	if err := j.openManifest(man, sealed); err != nil {
		return err
	}
	// From here on the journal may be written: a crash must not find the
	// marker.
	if err := removeClean(dir); err != nil {
		return err
	}
	seg := j.segs[len(j.segs)-1]
	// An index file of the active segment (left by a crash during a
	// roll, or by an operator's cut) would go stale with the next write;
	// it is written when the segment is sealed.
	if err := removeIndex(seg.path); err != nil {
		return err
	}
	f, err := os.OpenFile(seg.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("journal: open active segment: %w", err)
	}
	j.active, j.activeSeg = f, seg
	seg.end.Store(seg.size)
	j.mapActive()
	j.lastSeq = seg.last
	j.lastSeqA.Store(seg.last)
	j.durable.Store(seg.last)
	j.written, j.synced = seg.last, seg.last
	j.activeBase, j.activeSize = seg.base, seg.size
	if n := len(seg.index); n > 0 {
		j.lastIdxOff = seg.index[n-1].off
	}
	j.log.Info("journal: opened", "segments", len(j.segs), "segments_scanned", scanned,
		"segments_from_manifest", fromManifest, "bytes", total,
		"first_seq", j.segs[0].base, "last_seq", seg.last, "truncated_bytes", j.truncated,
		"clean_shutdown", wasClean,
		"fsync", j.opts.Fsync.String(), "scan", time.Since(start))
	return nil
}

// openManifest makes the manifest list exactly the sealed segments in
// j.segs (writing it again unless it already does, or only has a few
// entries left behind by retention) and opens it for appending. sealed is
// what loadSealed found. If the manifest cannot be written it is removed
// (the next Open takes the per-segment path) and nothing is appended to
// it; if it cannot even be removed, Open fails: a stale entry must not
// outlive this Open.
func (j *Journal) openManifest(man manifestState, sealed []sealedResult) error {
	dir := j.opts.Dir
	path := filepath.Join(dir, manifestName)
	n := len(j.segs) - 1 // sealed segments
	first := j.segs[0].base
	rewrite := !man.whole || man.count != len(man.byBase)
	dead := 0
	for base := range man.byBase {
		_, found := slices.BinarySearchFunc(j.segs[:n], base, func(s *segment, b uint64) int { return cmp.Compare(s.base, b) })
		switch {
		case found:
		case base < first:
			dead++ // left by retention: no future segment can have its base
		default:
			rewrite = true // stale, or for the active segment
		}
	}
	for i := range n {
		if !sealed[i].manifest {
			rewrite = true
		}
	}
	if dead > max(64, n) {
		rewrite = true
	}
	if rewrite {
		entries := make([]manifestEntry, n)
		for i, seg := range j.segs[:n] {
			if seg.lazy != nil {
				entries[i] = seg.lazy.want
				continue
			}
			entries[i] = entryFor(seg, indexCRC(seg.index), sealed[i].synced)
		}
		size, err := writeManifest(dir, entries)
		if err != nil {
			j.log.Warn("journal: manifest not written; the next open reads every sealed segment's index file", "err", err)
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("journal: remove stale manifest: %w", err)
			}
			return nil
		}
		j.manOff = size
	} else {
		j.manOff = int64(manifestHeaderSize + man.count*manifestEntrySize)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		j.log.Warn("journal: manifest not opened; sealed segments will not be added to it", "err", err)
		return nil
	}
	j.man = f
	return nil
}

// sealedResult is what Open found about one sealed segment.
type sealedResult struct {
	seg      *segment
	torn     tornTail
	scanned  bool // read through
	manifest bool // described by the manifest
	synced   bool // known to be fsynced (for its manifest entry)
	err      error
}

// loadSealed describes every segment but the last: from its manifest
// entry when it has one (see manifest.go), else from its index file or by
// scanning it, a few at a time (a few system calls per segment, and they
// overlap). The results are in the order of bases, so the caller reports
// the first damage in seq order.
func (j *Journal) loadSealed(dir string, bases []uint64, man manifestState) []sealedResult {
	n := max(len(bases)-1, 0)
	out := make([]sealedResult, n)
	next := make(chan int, n)
	for i, base := range bases[:n] {
		e, ok := man.byBase[base]
		if ok && e.synced {
			out[i] = sealedResult{seg: segmentFrom(joinPath(dir, base), e, time.Unix(0, e.modTime)), manifest: true, synced: true}
			continue
		}
		next <- i
	}
	close(next)
	// Segments fsynced here can be listed as synced in the manifest.
	syncFallback := j.opts.Fsync != FsyncNever
	var wg sync.WaitGroup
	for range min(len(next), 4*runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for i := range next {
				r := &out[i]
				path := joinPath(dir, bases[i])
				if e, ok := man.byBase[bases[i]]; ok {
					// Not known to be fsynced: used if the size matches.
					fi, err := os.Stat(path)
					if err == nil && fi.Size() == e.size {
						r.seg, r.manifest = segmentFrom(path, e, fi.ModTime()), true
						continue
					}
				}
				r.seg, r.torn, r.scanned, r.err = recoverSegment(path, bases[i], false, false, true, j.log)
				if r.err == nil && syncFallback {
					r.synced = syncFile(path) == nil
				}
			}
		})
	}
	wg.Wait()
	return out
}

// syncFile fdatasyncs the file at path.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return datasync(f)
}

type tornTail struct {
	bytes int64
	why   string
}

// checkCleanSegments checks that the segment files are the ones a journal
// closed cleanly at m left: its last segment is m.base.
func checkCleanSegments(dir string, bases []uint64, m cleanMarker) error {
	if len(bases) == 0 || bases[len(bases)-1] < m.base {
		return &CorruptError{File: joinPath(dir, m.base), Offset: 0, Reason: fmt.Sprintf(
			"segment missing: the journal was closed cleanly with its last segment starting at seq %d", m.base)}
	}
	if last := bases[len(bases)-1]; last > m.base {
		return &CorruptError{File: joinPath(dir, last), Offset: 0, Reason: fmt.Sprintf(
			"segment not written by this journal: it was closed cleanly with its last segment starting at seq %d", m.base)}
	}
	return nil
}

// recoverSegment describes one segment file: from its index file if
// useIndex and the index file checks out (see index.go), else by scanning
// it; then a sealed segment's index file is written if it was missing or
// bad. If tornOK (the last segment after a crash) and the segment ends in
// a torn record, the file is cut back to the last whole record. scanned
// says whether the segment was read through.
func recoverSegment(path string, base uint64, last, tornOK, useIndex bool, log *slog.Logger) (seg *segment, torn tornTail, scanned bool, err error) {
	if useIndex {
		// One stat and one small read instead of reading the segment.
		fi, err := os.Stat(path)
		if err != nil {
			return nil, tornTail{}, false, fmt.Errorf("journal: stat segment: %w", err)
		}
		si, err := loadIndexed(path, base, fi.Size())
		if err == nil {
			return &segment{base: base, path: path, size: si.size, last: si.last, lastOff: si.lastOff,
				index: si.index, modTime: fi.ModTime()}, tornTail{}, false, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			log.Warn("journal: index file not used; scanning the segment", "file", path, "reason", err)
		}
	}
	flag := os.O_RDONLY
	if last {
		flag = os.O_RDWR // a torn tail may have to be cut
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, tornTail{}, false, fmt.Errorf("journal: open segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, tornTail{}, false, fmt.Errorf("journal: stat segment: %w", err)
	}
	res, err := scanSegment(f, fi.Size(), path, base, tornOK)
	if err != nil {
		return nil, tornTail{}, true, err
	}
	if res.torn > 0 {
		if err := f.Truncate(res.size); err != nil {
			return nil, tornTail{}, true, fmt.Errorf("journal: truncate torn tail of %s: %w", path, err)
		}
		if err := datasync(f); err != nil {
			return nil, tornTail{}, true, fmt.Errorf("journal: sync %s: %w", path, err)
		}
	}
	seg = &segment{base: base, path: path, size: res.size, last: res.last, lastOff: res.lastOff, index: res.index, modTime: fi.ModTime()}
	if !last {
		if err := writeIndex(path, seg.describe()); err != nil {
			log.Warn("journal: write index file", "file", path, "err", err)
		}
	}
	return seg, tornTail{bytes: res.torn, why: res.tornWhy}, true, nil
}

func syncDir(dir string) error {
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("journal: sync dir %s: %w", dir, err)
	}
	return nil
}
