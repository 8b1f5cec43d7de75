package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/semprop/semprop/internal/atomicfile"
)

// The manifest (dir/MANIFEST) lists every sealed segment, so that Open
// describes them all from one small file instead of reading one index file
// per segment:
//
//	[header: magic "SPJMANIF", u32 version, u32 CRC32C of magic and version]
//	[entry: u64 base, u64 last seq, u64 size, u64 offset of the last record,
//	 i64 mtime (Unix ns), u32 index entry count, u32 CRC32C of the index
//	 file's entries, u32 flags, u32 CRC32C of the entry before this field]...
//
// little-endian. When a segment is sealed, the flusher appends its entry
// (one pwrite, not fsynced); a later entry for the same base replaces an
// earlier one. Like the index files, the manifest is a cache of what
// scanning would find, and Open falls back to the per-segment path (index
// file, else a scan) for every sealed segment it does not describe:
//
//   - A missing manifest, or one whose header does not check out, describes
//     nothing. Entries are read up to the first one that does not check out
//     (a crash tore the last append): it and everything after it are
//     ignored.
//   - An entry is used only for a segment file that exists and is not the
//     last; a segment file without an entry (added behind the journal's
//     back, or sealed just before a crash) takes the per-segment path; an
//     entry without a segment file (deleted by retention, or behind the
//     journal's back) is ignored, and Open's seq continuity check across
//     segments catches a segment missing in the middle.
//   - The synced flag says the segment was fsynced before its entry was
//     written (fsync policies always and interval), so the entry cannot
//     describe data a machine crash lost: Open trusts it without touching
//     the segment. An entry without the flag (fsync never) is used only if
//     the segment file has the size it records (one stat).
//
// Whenever the manifest is not exactly the list of sealed segments (an
// entry was torn, missing, stale, or for the active segment), Open writes
// it again (temporary file, fsync, rename, directory fsync) before anything
// is written, so a stale entry never outlives the Open that saw it; entries
// below the first segment (left by retention) cannot be confused with a
// future segment and are dropped only once they outnumber the others. The
// sparse index of a segment taken from the manifest is loaded from its
// index file the first time a Reader needs it, checked against the entry's
// count and CRC (a scan of the segment replaces an index file that does
// not check out).
const (
	manifestName       = "MANIFEST"
	manifestMagic      = "SPJMANIF"
	manifestVersion    = 1
	manifestHeaderSize = len(manifestMagic) + 4 + 4
	manifestEntrySize  = 5*8 + 4*4
	// manifestSynced is the flag of an entry whose segment was fsynced
	// before the entry was written.
	manifestSynced = 1
)

// manifestEntry describes one sealed segment: what its index file's footer
// says, its mtime and whether it was fsynced.
type manifestEntry struct {
	base     uint64
	last     uint64
	size     int64
	lastOff  int64
	modTime  int64 // Unix nanoseconds
	nIndex   uint32
	indexCRC uint32
	synced   bool
}

// manifestHeader appends the manifest's header to dst.
func manifestHeader(dst []byte) []byte {
	start := len(dst)
	dst = append(dst, manifestMagic...)
	dst = binary.LittleEndian.AppendUint32(dst, manifestVersion)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// appendEntry appends e's encoding to dst.
func (e manifestEntry) appendTo(dst []byte) []byte {
	start := len(dst)
	var flags uint32
	if e.synced {
		flags |= manifestSynced
	}
	dst = binary.LittleEndian.AppendUint64(dst, e.base)
	dst = binary.LittleEndian.AppendUint64(dst, e.last)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(e.size))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(e.lastOff))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(e.modTime))
	dst = binary.LittleEndian.AppendUint32(dst, e.nIndex)
	dst = binary.LittleEndian.AppendUint32(dst, e.indexCRC)
	dst = binary.LittleEndian.AppendUint32(dst, flags)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// decodeManifestEntry parses one entry of manifestEntrySize bytes; the
// error says what is wrong with it.
func decodeManifestEntry(b []byte) (manifestEntry, error) {
	body, sum := b[:manifestEntrySize-4], binary.LittleEndian.Uint32(b[manifestEntrySize-4:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return manifestEntry{}, fmt.Errorf("entry crc mismatch (stored %#08x, computed %#08x)", sum, got)
	}
	e := manifestEntry{
		base:     binary.LittleEndian.Uint64(body[0:8]),
		last:     binary.LittleEndian.Uint64(body[8:16]),
		size:     int64(binary.LittleEndian.Uint64(body[16:24])),
		lastOff:  int64(binary.LittleEndian.Uint64(body[24:32])),
		modTime:  int64(binary.LittleEndian.Uint64(body[32:40])),
		nIndex:   binary.LittleEndian.Uint32(body[40:44]),
		indexCRC: binary.LittleEndian.Uint32(body[44:48]),
	}
	flags := binary.LittleEndian.Uint32(body[48:52])
	e.synced = flags&manifestSynced != 0
	empty := e.last == e.base-1
	if e.base == 0 || e.last < e.base-1 || e.size < 0 || e.lastOff < 0 || flags&^manifestSynced != 0 ||
		(e.size == 0) != empty || (!empty && e.lastOff+headerSize > e.size) ||
		e.nIndex > maxIndexEntries || (empty && e.nIndex != 0) {
		return manifestEntry{}, fmt.Errorf("entry is inconsistent (base %d, last %d, size %d, last offset %d, %d index entries, flags %#x)",
			e.base, e.last, e.size, e.lastOff, e.nIndex, flags)
	}
	return e, nil
}

// decodeManifest parses a manifest: its entries up to the first one that
// does not check out (a torn append), and how many bytes of b they and the
// header cover. err says why the header is not usable; then nothing is.
func decodeManifest(b []byte) (entries []manifestEntry, valid int, why error) {
	if len(b) < manifestHeaderSize {
		return nil, 0, fmt.Errorf("manifest has %d bytes, less than a header", len(b))
	}
	if string(b[:len(manifestMagic)]) != manifestMagic {
		return nil, 0, errors.New("manifest has a bad magic number")
	}
	if sum, got := binary.LittleEndian.Uint32(b[manifestHeaderSize-4:]), crc32.Checksum(b[:manifestHeaderSize-4], castagnoli); sum != got {
		return nil, 0, fmt.Errorf("header crc mismatch (stored %#08x, computed %#08x)", sum, got)
	}
	if v := binary.LittleEndian.Uint32(b[len(manifestMagic):]); v != manifestVersion {
		return nil, 0, fmt.Errorf("manifest version %d, want %d", v, manifestVersion)
	}
	valid = manifestHeaderSize
	for len(b)-valid >= manifestEntrySize {
		e, err := decodeManifestEntry(b[valid : valid+manifestEntrySize])
		if err != nil {
			return entries, valid, nil
		}
		entries = append(entries, e)
		valid += manifestEntrySize
	}
	return entries, valid, nil
}

// manifestState is what Open found in the manifest.
type manifestState struct {
	byBase map[uint64]manifestEntry // the latest entry for each base
	count  int                      // entries read (duplicates included)
	whole  bool                     // the file exists and every byte of it checked out
}

// readManifest reads dir's manifest. A manifest that is missing or does not
// check out describes nothing (logged unless it is missing); an error is
// returned only if it exists and cannot be read.
func readManifest(dir string, log *slog.Logger) (manifestState, error) {
	path := filepath.Join(dir, manifestName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return manifestState{}, nil
	}
	if err != nil {
		return manifestState{}, fmt.Errorf("journal: read manifest: %w", err)
	}
	entries, valid, why := decodeManifest(b)
	if why != nil {
		log.Warn("journal: manifest not used; reading every sealed segment's index file", "file", path, "reason", why)
		return manifestState{}, nil
	}
	if valid < len(b) {
		log.Warn("journal: manifest ends in an entry that does not check out (torn append); ignoring it and what follows",
			"file", path, "offset", valid, "bytes", len(b)-valid)
	}
	st := manifestState{byBase: make(map[uint64]manifestEntry, len(entries)), count: len(entries), whole: valid == len(b)}
	for _, e := range entries {
		st.byBase[e.base] = e
	}
	return st, nil
}

// writeManifest replaces dir's manifest with one listing entries, durably
// (temporary file, fsync, rename, directory fsync). It returns the new
// file's size.
func writeManifest(dir string, entries []manifestEntry) (int64, error) {
	b := manifestHeader(make([]byte, 0, manifestHeaderSize+len(entries)*manifestEntrySize))
	for _, e := range entries {
		b = e.appendTo(b)
	}
	if err := atomicfile.Write(filepath.Join(dir, manifestName), b, 0o644); err != nil {
		return 0, fmt.Errorf("journal: write manifest: %w", err)
	}
	return int64(len(b)), nil
}

// entryFor returns the manifest entry describing seg, a sealed segment
// whose index is in memory, with indexCRC the CRC of its index file's
// entries.
func entryFor(seg *segment, indexCRC uint32, synced bool) manifestEntry {
	return manifestEntry{base: seg.base, last: seg.last, size: seg.size, lastOff: seg.lastOff,
		modTime: seg.modTime.UnixNano(), nIndex: uint32(len(seg.index)), indexCRC: indexCRC, synced: synced}
}

// segmentFrom returns the segment an entry describes, its index not loaded.
func segmentFrom(path string, e manifestEntry, modTime time.Time) *segment {
	return &segment{base: e.base, path: path, size: e.size, last: e.last, lastOff: e.lastOff,
		modTime: modTime, lazy: &lazyIndex{want: e}}
}

// appendManifest appends e to the open manifest. flushMu must be held. A
// failure costs the next Open the per-segment path for this segment; the
// bytes a partial write left are cut so that later entries still count.
func (j *Journal) appendManifest(e manifestEntry) {
	if j.man == nil {
		return
	}
	b := e.appendTo(j.manBuf[:0])
	j.manBuf = b
	if _, err := j.man.WriteAt(b, j.manOff); err != nil {
		j.limited.Log(slog.LevelWarn, "journal: append to manifest", "err", err)
		_ = j.man.Truncate(j.manOff)
		return
	}
	j.manOff += int64(len(b))
}
