package journal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// headerSize is the fixed record header: u32 length, u32 CRC32C, u64 seq.
	headerSize = 16
	// MaxRecordSize is the largest payload a record may carry. A header
	// announcing more is treated as damage.
	MaxRecordSize = 64 << 20
	// indexInterval is the distance in bytes between sparse index entries.
	indexInterval = 64 << 10
	segSuffix     = ".seg"
	segNameDigits = 20
	// sectorSize is the unit a storage device writes whole: a write torn by
	// a crash loses whole sectors, which read back as zeros.
	sectorSize = 512
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordCRC is the CRC32C of a whole record rec (header and payload): it
// covers the little-endian seq followed by the payload, which are adjacent.
func recordCRC(rec []byte) uint32 {
	return crc32.Checksum(rec[8:], castagnoli)
}

// putHeader fills the header of rec, a record whose payload is rec[16:].
func putHeader(rec []byte, seq uint64) {
	binary.LittleEndian.PutUint32(rec[0:4], uint32(len(rec)-headerSize))
	binary.LittleEndian.PutUint64(rec[8:16], seq)
	binary.LittleEndian.PutUint32(rec[4:8], recordCRC(rec))
}

func parseHeader(hdr []byte) (length, crc uint32, seq uint64) {
	return binary.LittleEndian.Uint32(hdr[0:4]), binary.LittleEndian.Uint32(hdr[4:8]), binary.LittleEndian.Uint64(hdr[8:16])
}

// indexEntry says that the record with seq starts at off in its segment.
type indexEntry struct {
	seq uint64
	off int64
}

// segment is the in-memory description of one segment file. base and path
// never change; the other fields are guarded by Journal.segMu.
type segment struct {
	base uint64
	path string

	size    int64        // bytes of whole records written to the file
	last    uint64       // last seq in the file; base-1 if empty
	lastOff int64        // offset of the record with seq last (if any)
	index   []indexEntry // sparse, ascending; the first record (base, 0) is implicit
	modTime time.Time    // when sealed (at or after its newest write); before: creation, or mtime at Open

	// lazy is non-nil (and never changes) for a sealed segment Open took
	// from the manifest: its index is not in index but loaded by the
	// first Reader that needs it.
	lazy *lazyIndex

	// prealloc is set once the segment's file was preallocated and mapped
	// for writing (mapActive): the file is then longer than its records,
	// and Readers read only up to end, the bytes of whole records written
	// (set before the records are made durable).
	prealloc atomic.Bool
	end      atomic.Int64
}

// describe returns what the segment's index file records. The caller must
// be the segment's only writer (the flusher) or hold segMu.
func (s *segment) describe() segIndex {
	return segIndex{base: s.base, last: s.last, size: s.size, lastOff: s.lastOff, index: s.index}
}

// locate returns the index entry to start a scan for seq from: the greatest
// entry with entry.seq <= seq, or (base, 0). segMu must be held.
func (s *segment) locate(seq uint64) indexEntry {
	return locateIn(s.index, s.base, seq)
}

// locateIn returns the greatest entry of index (sparse, ascending, of the
// segment starting at base) with entry.seq <= seq, or (base, 0).
func locateIn(index []indexEntry, base, seq uint64) indexEntry {
	i, found := slices.BinarySearchFunc(index, seq, func(e indexEntry, t uint64) int {
		switch {
		case e.seq < t:
			return -1
		case e.seq > t:
			return 1
		}
		return 0
	})
	if found {
		return index[i]
	}
	if i == 0 {
		return indexEntry{seq: base, off: 0}
	}
	return index[i-1]
}

// lazyIndex is the sparse index of a sealed segment described by the
// manifest, loaded on first use. Safe for concurrent use; mu is never held
// together with a Journal lock.
type lazyIndex struct {
	want manifestEntry // what the index file must match

	mu     sync.Mutex
	loaded bool
	index  []indexEntry
}

// get returns the segment's index, loading it on the first call: from the
// index file if it matches the manifest entry, else by scanning the
// segment (and writing the index file again). A segment that does not hold
// what the manifest says is a *CorruptError.
func (l *lazyIndex) get(path string, log *slog.Logger) ([]indexEntry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.loaded {
		return l.index, nil
	}
	index, err := loadLazy(path, l.want, log)
	if err != nil {
		return nil, err
	}
	l.index, l.loaded = index, true
	return index, nil
}

// loadLazy loads the index of the sealed segment at path that manifest
// entry e describes.
func loadLazy(path string, e manifestEntry, log *slog.Logger) ([]indexEntry, error) {
	si, err := loadIndexed(path, e.base, e.size)
	if err == nil && (si.last != e.last || si.lastOff != e.lastOff || len(si.index) != int(e.nIndex) || indexCRC(si.index) != e.indexCRC) {
		err = errors.New("index file does not match the manifest")
	}
	if err == nil {
		return si.index, nil
	}
	why := err
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("journal: open segment: %w", err)
	}
	defer f.Close()
	log.Warn("journal: index file not used; scanning the segment", "file", path, "reason", why)
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("journal: stat segment: %w", err)
	}
	res, err := scanSegment(f, fi.Size(), path, e.base, false)
	if err != nil {
		return nil, err
	}
	if res.size != e.size || res.last != e.last {
		return nil, &CorruptError{File: path, Offset: min(res.size, e.size), Reason: fmt.Sprintf(
			"segment holds %d bytes up to seq %d, but the manifest says %d bytes up to seq %d",
			res.size, res.last, e.size, e.last)}
	}
	if err := writeIndex(path, segIndex{base: e.base, last: res.last, size: res.size, lastOff: res.lastOff, index: res.index}); err != nil {
		log.Warn("journal: write index file", "file", path, "err", err)
	}
	return res.index, nil
}

func segName(base uint64) string {
	return fmt.Sprintf("%0*d%s", segNameDigits, base, segSuffix)
}

// listSegments returns the bases of the segment files in dir, ascending.
func listSegments(dir string) ([]uint64, error) {
	bases, _, err := listDir(dir)
	return bases, err
}

// listDir returns the bases of the segment files in dir, ascending, and
// the names of the index files whose segment file does not exist (strays:
// retention removes the segment first). It reads the directory once,
// unsorted.
func listDir(dir string) (bases []uint64, strays []string, err error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("journal: list %s: %w", dir, err)
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("journal: list %s: %w", dir, err)
	}
	var idx []string
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, indexSuffix) {
			idx = append(idx, name)
			continue
		}
		if !strings.HasSuffix(name, segSuffix) || !e.Type().IsRegular() {
			continue
		}
		base, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil || base == 0 || len(name) != segNameDigits+len(segSuffix) {
			return nil, nil, fmt.Errorf("journal: unexpected segment file name %q in %s", name, dir)
		}
		bases = append(bases, base)
	}
	slices.Sort(bases)
	for _, name := range idx {
		base, err := strconv.ParseUint(strings.TrimSuffix(name, indexSuffix), 10, 64)
		if err != nil || len(name) != segNameDigits+len(indexSuffix) {
			strays = append(strays, name)
			continue
		}
		if _, found := slices.BinarySearch(bases, base); !found {
			strays = append(strays, name)
		}
	}
	return bases, strays, nil
}

// scanResult is what scanning one segment found.
type scanResult struct {
	size      int64  // bytes of valid records; the file is cut here if torn
	last      uint64 // last valid seq; base-1 if none
	lastOff   int64  // offset of the record with seq last
	index     []indexEntry
	torn      int64  // bytes after size that form a torn tail (last segment only)
	tornWhy   string // why the tail was judged torn
	fileBytes int64  // file size as found
}

// scanSegment reads every record of the segment file f (named path, first
// seq base), verifying CRCs and seq continuity and building the sparse index.
// If tornOK is true (the last segment after a crash), a torn final record is
// reported in torn instead of as an error (see the package doc for the
// rule); any other damage is a *CorruptError.
func scanSegment(f io.ReaderAt, fileSize int64, path string, base uint64, tornOK bool) (scanResult, error) {
	res := scanResult{last: base - 1, fileBytes: fileSize}
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, fileSize), 1<<20)
	rec := make([]byte, 0, 64<<10) // header + payload of the current record
	off := int64(0)
	expect := base
	lastIdx := int64(0)
	corrupt := func(reason string) error {
		return &CorruptError{File: path, Offset: off, Reason: reason}
	}
	torn := func(reason string) (scanResult, error) {
		res.size = off
		res.torn = fileSize - off
		res.tornWhy = reason
		return res, nil
	}
	for off < fileSize {
		rem := fileSize - off
		if rem < headerSize {
			if tornOK {
				return torn(fmt.Sprintf("short header (%d bytes) at end of file", rem))
			}
			return res, corrupt(fmt.Sprintf("short header (%d bytes) at end of segment", rem))
		}
		rec = rec[:headerSize]
		if _, err := io.ReadFull(br, rec); err != nil {
			return res, fmt.Errorf("journal: read %s at %d: %w", path, off, err)
		}
		length, crc, seq := parseHeader(rec)
		end := off + headerSize + int64(length)
		if length > MaxRecordSize || end > fileSize {
			if tornOK {
				return torn(fmt.Sprintf("record length %d runs past end of file", length))
			}
			return res, corrupt(fmt.Sprintf("record length %d runs past end of segment (size %d)", length, fileSize))
		}
		rec = slices.Grow(rec, int(length))[:headerSize+int(length)]
		if _, err := io.ReadFull(br, rec[headerSize:]); err != nil {
			return res, fmt.Errorf("journal: read %s at %d: %w", path, off, err)
		}
		if got := recordCRC(rec); got != crc {
			// A copy into a mapped segment (preallocated, so zeros follow
			// the last record) cut short by the process's death leaves
			// the record zero from any byte inside it on.
			cutShort := end < fileSize && rec[len(rec)-1] == 0
			if tornOK && (lostSectors(rec, off) || cutShort) {
				zero, err := allZero(f, end, fileSize)
				if err != nil {
					return res, fmt.Errorf("journal: read %s at %d: %w", path, end, err)
				}
				if zero {
					switch {
					case !slices.ContainsFunc(rec, func(b byte) bool { return b != 0 }):
						return torn("zeros after the last record (preallocated space, or a write lost whole)")
					case lostSectors(rec, off):
						return torn("final record ends in zeroed sectors")
					}
					return torn("final record cut short by zeros (a write into preallocated space interrupted)")
				}
			}
			return res, corrupt(fmt.Sprintf("crc mismatch (stored %#08x, computed %#08x) for record seq %d", crc, got, seq))
		}
		if seq != expect {
			return res, corrupt(fmt.Sprintf("seq discontinuity: record has seq %d, want %d", seq, expect))
		}
		if off-lastIdx >= indexInterval {
			res.index = append(res.index, indexEntry{seq: seq, off: off})
			lastIdx = off
		}
		res.last, res.lastOff = seq, off
		expect++
		off = end
	}
	res.size = off
	return res, nil
}

// lostSectors reports whether rec, a whole record at file offset off whose
// CRC fails, looks like a write torn by a crash rather than damaged: it is
// zero from its start, or from a sector boundary inside it, to its end. A
// crash loses whole sectors of data the file's size already covers, and
// they read back as zeros; a flipped bit or a garbled byte does not look
// like that.
func lostSectors(rec []byte, off int64) bool {
	z := len(rec)
	for z > 0 && rec[z-1] == 0 {
		z--
	}
	if z == 0 {
		return true
	}
	zAbs := off + int64(z)
	boundary := (zAbs + sectorSize - 1) / sectorSize * sectorSize
	return boundary < off+int64(len(rec))
}

// allZero reports whether every byte of f in [from, to) is zero.
func allZero(f io.ReaderAt, from, to int64) (bool, error) {
	buf := make([]byte, 64<<10)
	for from < to {
		n := min(int64(len(buf)), to-from)
		m, err := f.ReadAt(buf[:n], from)
		for _, b := range buf[:m] {
			if b != 0 {
				return false, nil
			}
		}
		from += int64(m)
		if err != nil && !(errors.Is(err, io.EOF) && from >= to) {
			return false, err
		}
	}
	return true, nil
}

func joinPath(dir string, base uint64) string { return filepath.Join(dir, segName(base)) }
