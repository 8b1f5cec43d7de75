package journal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
)

const readBufSize = 256 << 10

// Reader is a cursor over the journal's durable records. It reads through
// its own file descriptor, so retention deleting the segment it is reading
// does not disturb it (the open descriptor keeps the data readable). A
// Reader is not safe for concurrent use; use one per goroutine.
type Reader struct {
	j    *Journal
	next uint64 // seq of the next record to return

	f      *os.File // open segment, nil if not positioned
	rd     preader  // reads f: one pread(2) per call, or a copy from its mapping
	fbase  uint64   // base of the open segment
	fpath  string
	fseg   *segment // the open segment's description
	buf    []byte   // bytes of f from file offset bufOff
	bufOff int64
	pos    int // offset in buf of the next record header
	closed bool
}

// Reader returns a cursor whose first record is the one with the smallest
// seq >= from (from 0 means 1). from may be beyond LastSeq: the Reader then
// waits for it. If from is older than FirstSeq because retention deleted it,
// Reader returns a *TruncatedError (errors.Is ErrTruncated) carrying the
// first available seq, so the caller decides whether to resume there with
// Reader(err.First). Safe for concurrent use.
func (j *Journal) Reader(from uint64) (*Reader, error) {
	if j.closedA.Load() {
		return nil, ErrClosed
	}
	if from == 0 {
		from = 1
	}
	if first := j.FirstSeq(); from < first {
		return nil, &TruncatedError{Requested: from, First: first}
	}
	return &Reader{j: j, next: from}, nil
}

// Next returns the next record, blocking (without polling: it waits on
// Journal.Changed) until one is durable or ctx ends. payload is valid until
// the next call on r. If retention deleted records the Reader had not read
// yet, Next returns a *TruncatedError and skips to the first retained
// record: the next call continues from there. After the journal is closed,
// Next returns ErrClosed.
func (r *Reader) Next(ctx context.Context) (seq uint64, payload []byte, err error) {
	for {
		seq, payload, ok, err := r.TryNext()
		if err != nil || ok {
			return seq, payload, err
		}
		ch := r.j.Changed()
		if r.next <= r.j.durable.Load() || r.j.closedA.Load() {
			continue
		}
		select {
		case <-ch:
		case <-r.j.done:
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		}
	}
}

// TryNext is Next without blocking: ok is false when no further durable
// record exists yet.
func (r *Reader) TryNext() (seq uint64, payload []byte, ok bool, err error) {
	if r.closed {
		return 0, nil, false, fmt.Errorf("%w: reader", ErrClosed)
	}
	if r.j.closedA.Load() {
		return 0, nil, false, ErrClosed
	}
	if r.next > r.j.durable.Load() {
		if e := r.j.failErr.Load(); e != nil {
			return 0, nil, false, *e // nothing more will become durable
		}
		return 0, nil, false, nil
	}
	seq, payload, err = r.read()
	if err != nil {
		return 0, nil, false, err
	}
	return seq, payload, true, nil
}

// Close releases the Reader's file descriptor. It is idempotent.
func (r *Reader) Close() error {
	r.closed = true
	return r.closeFile()
}

func (r *Reader) closeFile() error {
	if r.f == nil {
		return nil
	}
	r.rd.close()
	err := r.f.Close()
	r.f = nil
	r.buf = r.buf[:0]
	return err
}

// read returns record r.next, which must be durable.
func (r *Reader) read() (uint64, []byte, error) {
	if r.f == nil {
		if err := r.position(0); err != nil {
			return 0, nil, err
		}
	}
	for {
		ok, err := r.fill(headerSize)
		if err != nil {
			return 0, nil, err
		}
		if !ok {
			// This segment has no more records: r.next starts the next one.
			if err := r.position(r.fbase); err != nil {
				return 0, nil, err
			}
			continue
		}
		off := r.bufOff + int64(r.pos)
		length, crc, seq := parseHeader(r.buf[r.pos:])
		if length > MaxRecordSize {
			return 0, nil, r.corrupt(off, fmt.Sprintf("record length %d too large", length))
		}
		n := headerSize + int(length)
		if ok, err := r.fill(n); err != nil {
			return 0, nil, err
		} else if !ok {
			return 0, nil, r.corrupt(off, fmt.Sprintf("record seq %d cut short", seq))
		}
		if seq < r.next && seq >= r.fbase {
			r.pos += n // scanning forward from an index entry
			continue
		}
		if seq != r.next {
			return 0, nil, r.corrupt(off, fmt.Sprintf("seq discontinuity: record has seq %d, want %d", seq, r.next))
		}
		if got := recordCRC(r.buf[r.pos : r.pos+n]); got != crc {
			return 0, nil, r.corrupt(off, fmt.Sprintf("crc mismatch (stored %#08x, computed %#08x) for record seq %d", crc, got, seq))
		}
		payload := r.buf[r.pos+headerSize : r.pos+n]
		r.pos += n
		r.next++
		return seq, payload, nil
	}
}

func (r *Reader) corrupt(off int64, reason string) error {
	return &CorruptError{File: r.fpath, Offset: off, Reason: reason}
}

// position opens the segment holding r.next and seeks to the index entry at
// or before it. exhausted is the base of a segment just read to its end (0
// if none): finding it again means a record is missing.
func (r *Reader) position(exhausted uint64) error {
	for attempt := 0; ; attempt++ {
		if err := r.closeFile(); err != nil {
			return fmt.Errorf("journal: reader: close %s: %w", r.fpath, err)
		}
		j := r.j
		j.segMu.RLock()
		segs := j.segs
		i := sort.Search(len(segs), func(i int) bool { return segs[i].base > r.next }) - 1
		if i < 0 {
			first := segs[0].base
			j.segMu.RUnlock()
			te := &TruncatedError{Requested: r.next, First: first}
			r.next = first
			return te
		}
		seg := segs[i]
		var e indexEntry
		lazy := seg.lazy
		if lazy == nil {
			e = seg.locate(r.next)
		}
		base, path := seg.base, seg.path
		j.segMu.RUnlock()
		if base == exhausted {
			return &CorruptError{File: path, Offset: r.bufOff + int64(r.pos),
				Reason: fmt.Sprintf("segment ends before durable seq %d", r.next)}
		}
		if lazy != nil {
			// A sealed segment Open took from the manifest: its index is
			// loaded on first use (without holding segMu).
			index, err := lazy.get(path, j.log)
			if errors.Is(err, fs.ErrNotExist) && attempt < 3 {
				continue // deleted by retention meanwhile: look again
			}
			if err != nil {
				if errors.Is(err, ErrCorrupt) {
					return err
				}
				return fmt.Errorf("journal: reader: %w", err)
			}
			e = locateIn(index, base, r.next)
		}
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) && attempt < 3 {
			continue // deleted by retention meanwhile: look again
		}
		if err != nil {
			return fmt.Errorf("journal: reader: %w", err)
		}
		rd, err := newPreader(f)
		if err != nil {
			f.Close()
			return fmt.Errorf("journal: reader: %w", err)
		}
		r.f, r.rd, r.fbase, r.fpath, r.fseg = f, rd, base, path, seg
		r.buf, r.bufOff, r.pos = r.buf[:0], e.off, 0
		return nil
	}
}

// fill makes sure buf holds at least n bytes from pos on, reading more of
// the file if needed. ok is false if the file has fewer bytes. Each read
// asks for as much as buf can hold but takes what the file has: a Reader
// following the active segment makes one pread(2) per new batch of
// records, not a second one to find the end of the file.
func (r *Reader) fill(n int) (ok bool, err error) {
	if len(r.buf)-r.pos >= n {
		return true, nil
	}
	if r.pos > 0 {
		m := copy(r.buf, r.buf[r.pos:])
		r.buf = r.buf[:m]
		r.bufOff += int64(r.pos)
		r.pos = 0
	}
	if want := max(n, readBufSize); cap(r.buf) < want {
		nb := make([]byte, len(r.buf), want)
		copy(nb, r.buf)
		r.buf = nb
	}
	for len(r.buf) < n {
		off := r.bufOff + int64(len(r.buf))
		dst := r.buf[len(r.buf):cap(r.buf)]
		if r.fseg.prealloc.Load() {
			// The file goes on past its records (zeros, preallocated):
			// read only what was written.
			avail := r.fseg.end.Load() - off
			if avail <= 0 {
				return false, nil
			}
			dst = dst[:min(int64(len(dst)), avail)]
			// Following the segment being written: read it through a
			// mapping of its own, a copy instead of a pread(2) for
			// every few records a tailing reader takes.
			r.rd.mapRead()
		}
		m, err := r.rd.readAt(dst, off)
		if err != nil {
			return false, fmt.Errorf("journal: reader: read %s: %w", r.fpath, err)
		}
		if m == 0 {
			return false, nil // the end of the file
		}
		r.buf = r.buf[:len(r.buf)+m]
	}
	return true, nil
}
