package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"strings"
)

// The index file of a sealed segment. When a segment is sealed (the next
// one is created), the flusher writes NAME.idx beside NAME.seg: the
// segment's sparse index followed by a checksummed footer. A Reader loads
// it the first time it needs the index of a segment Open took from the
// manifest (checked against the entry's count and CRC), and Open takes a
// sealed segment's description from it, instead of scanning the segment,
// when the manifest does not describe the segment:
//
//	[index entries: u64 seq, u64 offset]...
//	[footer: magic "SPJINDEX", u32 version, u64 base, u64 last seq,
//	 u64 record count, u64 size, u64 offset of the last record,
//	 u32 entry count, u32 CRC32C of the entries, u32 CRC32C of the footer
//	 before this field]
//
// little-endian. An index file is a cache of what a scan would find: it is
// written without fsync (a crash can leave it torn, empty or missing) and
// trusted only if its footer and entries check out, its base matches the
// segment's name and its size matches the segment file's size (segments
// are append-only, so a stale index file has another size); Open also
// checks that each segment starts right after the previous one's last
// seq. Otherwise Open (or the Reader) scans the segment and writes the
// index file again. The records of a segment Open did not scan are checked
// (CRC, seq) by the Readers that read them, and by Verify. Journals written
// before index files existed open the same way (and get them).
const (
	indexSuffix    = ".idx"
	indexMagic     = "SPJINDEX"
	indexVersion   = 1
	indexEntrySize = 16
	// indexFooterSize: magic, version, base, last, count, size, last
	// offset, entry count, entries CRC, footer CRC.
	indexFooterSize = len(indexMagic) + 4 + 8 + 8 + 8 + 8 + 8 + 4 + 4 + 4
	// maxIndexEntries bounds what a decoder accepts (a segment of
	// MaxRecordSize*2 bytes needs far fewer).
	maxIndexEntries = 1 << 24
)

// segIndex is what an index file records about a sealed segment.
type segIndex struct {
	base    uint64
	last    uint64
	size    int64
	lastOff int64 // offset of the last record; meaningless if the segment is empty
	index   []indexEntry
}

func indexPath(segPath string) string {
	return strings.TrimSuffix(segPath, segSuffix) + indexSuffix
}

// encodeIndex appends the index file of s to dst.
func encodeIndex(dst []byte, s segIndex) []byte {
	start := len(dst)
	for _, e := range s.index {
		dst = binary.LittleEndian.AppendUint64(dst, e.seq)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(e.off))
	}
	entriesCRC := crc32.Checksum(dst[start:], castagnoli)
	foot := len(dst)
	dst = append(dst, indexMagic...)
	dst = binary.LittleEndian.AppendUint32(dst, indexVersion)
	dst = binary.LittleEndian.AppendUint64(dst, s.base)
	dst = binary.LittleEndian.AppendUint64(dst, s.last)
	dst = binary.LittleEndian.AppendUint64(dst, s.last+1-s.base)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(s.size))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(s.lastOff))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s.index)))
	dst = binary.LittleEndian.AppendUint32(dst, entriesCRC)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[foot:], castagnoli))
}

// indexCRC is the CRC32C of the entries of an index file holding index.
func indexCRC(index []indexEntry) uint32 {
	var crc uint32
	var b [indexEntrySize]byte
	for _, e := range index {
		binary.LittleEndian.PutUint64(b[0:8], e.seq)
		binary.LittleEndian.PutUint64(b[8:16], uint64(e.off))
		crc = crc32.Update(crc, castagnoli, b[:])
	}
	return crc
}

// decodeIndex parses an index file; the error says what is wrong with it.
// It checks the file's own consistency, not that it matches a segment.
func decodeIndex(b []byte) (segIndex, error) {
	if len(b) < indexFooterSize {
		return segIndex{}, fmt.Errorf("index file has %d bytes, less than a footer", len(b))
	}
	foot := b[len(b)-indexFooterSize:]
	body, sum := foot[:indexFooterSize-4], binary.LittleEndian.Uint32(foot[indexFooterSize-4:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return segIndex{}, fmt.Errorf("footer crc mismatch (stored %#08x, computed %#08x)", sum, got)
	}
	if string(body[:len(indexMagic)]) != indexMagic {
		return segIndex{}, errors.New("footer has a bad magic number")
	}
	p := body[len(indexMagic):]
	if v := binary.LittleEndian.Uint32(p[0:4]); v != indexVersion {
		return segIndex{}, fmt.Errorf("index file version %d, want %d", v, indexVersion)
	}
	s := segIndex{
		base:    binary.LittleEndian.Uint64(p[4:12]),
		last:    binary.LittleEndian.Uint64(p[12:20]),
		size:    int64(binary.LittleEndian.Uint64(p[28:36])),
		lastOff: int64(binary.LittleEndian.Uint64(p[36:44])),
	}
	count := binary.LittleEndian.Uint64(p[20:28])
	n := binary.LittleEndian.Uint32(p[44:48])
	entriesCRC := binary.LittleEndian.Uint32(p[48:52])
	if s.base == 0 || s.last < s.base-1 || count != s.last+1-s.base || s.size < 0 || s.lastOff < 0 ||
		(s.size == 0) != (count == 0) || (count > 0 && s.lastOff+headerSize > s.size) {
		return segIndex{}, fmt.Errorf("footer is inconsistent (base %d, last %d, count %d, size %d, last offset %d)",
			s.base, s.last, count, s.size, s.lastOff)
	}
	entries := b[:len(b)-indexFooterSize]
	if n > maxIndexEntries || len(entries) != int(n)*indexEntrySize {
		return segIndex{}, fmt.Errorf("index has %d bytes of entries, footer says %d entries", len(entries), n)
	}
	if got := crc32.Checksum(entries, castagnoli); got != entriesCRC {
		return segIndex{}, fmt.Errorf("index crc mismatch (stored %#08x, computed %#08x)", entriesCRC, got)
	}
	if n > 0 {
		s.index = make([]indexEntry, n)
	}
	prev := indexEntry{seq: s.base, off: 0}
	for i := range s.index {
		e := indexEntry{
			seq: binary.LittleEndian.Uint64(entries[i*indexEntrySize:]),
			off: int64(binary.LittleEndian.Uint64(entries[i*indexEntrySize+8:])),
		}
		if e.seq <= prev.seq || e.seq > s.last || e.off <= prev.off || e.off > s.lastOff {
			return segIndex{}, fmt.Errorf("index entry %d (seq %d at %d) is out of order", i, e.seq, e.off)
		}
		s.index[i], prev = e, e
	}
	return s, nil
}

// writeIndex writes the index file of a segment, replacing any. It is not
// fsynced: a torn or missing index file only makes the next Open scan the
// segment.
func writeIndex(segPath string, s segIndex) error {
	b := encodeIndex(make([]byte, 0, len(s.index)*indexEntrySize+indexFooterSize), s)
	if err := os.WriteFile(indexPath(segPath), b, 0o644); err != nil {
		return fmt.Errorf("journal: write index file: %w", err)
	}
	return nil
}

// loadIndexed describes the segment file named path (first seq base,
// size bytes) from its index file, checking it against the segment (see
// the index file's rules above). The error says why it cannot be used
// (fs.ErrNotExist if there is none); the caller then scans the segment.
func loadIndexed(path string, base uint64, size int64) (segIndex, error) {
	b, err := readSmall(indexPath(path))
	if err != nil {
		return segIndex{}, err
	}
	s, err := decodeIndex(b)
	if err != nil {
		return segIndex{}, err
	}
	if s.base != base {
		return segIndex{}, fmt.Errorf("index file is for the segment starting at %d", s.base)
	}
	if s.size != size {
		return segIndex{}, fmt.Errorf("index file says %d bytes, the segment has %d", s.size, size)
	}
	return s, nil
}

// readSmall reads a whole file with as few system calls as it can: open,
// one read for a file under 64 KiB, close.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	n := 0
	for {
		m, err := f.Read(buf[n:])
		n += m
		if errors.Is(err, io.EOF) || (err == nil && m == 0) {
			return buf[:n], nil
		}
		if err != nil {
			return nil, err
		}
		if n < len(buf) {
			// A short read of a regular file: this was all of it
			// unless it grew meanwhile, which an index file does not.
			return buf[:n], nil
		}
		buf = append(buf, make([]byte, len(buf))...)
	}
}

// removeIndex deletes a segment's index file, if any.
func removeIndex(segPath string) error {
	if err := os.Remove(indexPath(segPath)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("journal: remove index file: %w", err)
	}
	return nil
}
