package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
)

// The clean-shutdown marker. Close writes it, after everything is written
// and fsynced, to say exactly where the journal ends; Open checks the last
// segment against it and deletes it (fsyncing the directory) before
// anything is written. Its presence therefore proves that nothing was being
// written when the journal last stopped, so no torn write can exist and any
// damage at the tail is corruption.
const (
	cleanName    = "CLEAN"
	cleanTmpName = "CLEAN.tmp"
	cleanMagic   = "SPJCLEAN"
	// cleanSize is the marker's size: magic, u64 base, u64 size, u64 last
	// seq, u32 CRC32C of everything before it.
	cleanSize = len(cleanMagic) + 8 + 8 + 8 + 4
)

// cleanMarker is where a cleanly closed journal ends: its last segment
// starts at base, holds size bytes, and its last record has seq last (base-1
// if the segment is empty).
type cleanMarker struct {
	base uint64
	size int64
	last uint64
}

func (m cleanMarker) encode() []byte {
	b := make([]byte, 0, cleanSize)
	b = append(b, cleanMagic...)
	b = binary.LittleEndian.AppendUint64(b, m.base)
	b = binary.LittleEndian.AppendUint64(b, uint64(m.size))
	b = binary.LittleEndian.AppendUint64(b, m.last)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeClean parses a marker; the error says what is wrong with it.
func decodeClean(b []byte) (cleanMarker, error) {
	if len(b) != cleanSize {
		return cleanMarker{}, fmt.Errorf("marker has %d bytes, want %d", len(b), cleanSize)
	}
	if string(b[:len(cleanMagic)]) != cleanMagic {
		return cleanMarker{}, errors.New("marker has a bad magic number")
	}
	body, sum := b[:cleanSize-4], binary.LittleEndian.Uint32(b[cleanSize-4:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return cleanMarker{}, fmt.Errorf("marker crc mismatch (stored %#08x, computed %#08x)", sum, got)
	}
	p := body[len(cleanMagic):]
	m := cleanMarker{
		base: binary.LittleEndian.Uint64(p[0:8]),
		size: int64(binary.LittleEndian.Uint64(p[8:16])),
		last: binary.LittleEndian.Uint64(p[16:24]),
	}
	if m.base == 0 || m.size < 0 || m.last < m.base-1 || (m.size == 0) != (m.last == m.base-1) {
		return cleanMarker{}, fmt.Errorf("marker is inconsistent (base %d, size %d, last %d)", m.base, m.size, m.last)
	}
	return m, nil
}

// writeClean writes the marker atomically and durably: a temporary file,
// fsynced, renamed over, and the directory fsynced.
func writeClean(dir string, m cleanMarker) error {
	tmp := filepath.Join(dir, cleanTmpName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("journal: write clean-shutdown marker: %w", err)
	}
	_, err = f.Write(m.encode())
	if err == nil {
		err = datasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, cleanName))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("journal: write clean-shutdown marker: %w", err)
	}
	return syncDir(dir)
}

// readClean returns the marker in dir; ok is false if there is none. A
// marker that cannot be parsed is a *CorruptError naming it.
func readClean(dir string) (m cleanMarker, ok bool, err error) {
	path := filepath.Join(dir, cleanName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cleanMarker{}, false, nil
	}
	if err != nil {
		return cleanMarker{}, false, fmt.Errorf("journal: read clean-shutdown marker: %w", err)
	}
	m, err = decodeClean(b)
	if err != nil {
		return cleanMarker{}, false, &CorruptError{File: path, Offset: 0, Reason: err.Error()}
	}
	return m, true, nil
}

// removeClean deletes the marker (and a leftover temporary one) durably,
// so that a crash from now on is not mistaken for a clean shutdown.
func removeClean(dir string) error {
	var removed bool
	for _, name := range []string{cleanName, cleanTmpName} {
		err := os.Remove(filepath.Join(dir, name))
		if err == nil {
			removed = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("journal: remove clean-shutdown marker: %w", err)
		}
	}
	if !removed {
		return nil
	}
	return syncDir(dir)
}
