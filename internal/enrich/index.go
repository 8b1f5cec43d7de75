package enrich

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/semprop/semprop/internal/atomicfile"
)

// The index file: a header, then records, each
//
//	u32 length of payload | u32 CRC-32C of payload | payload
//
// with payload
//
//	op (1 set, 2 delete) | uvarint len + path | for set: uvarint len + hash,
//	varint size, uvarint len + mime, u16 entropy in thousandths of a bit
//
// It is an append-only log: a crash can leave a torn last record, which
// fails its CRC and ends the replay there (the records before it are kept).
// On open the log is replayed and compacted: the live entries are written
// to a temporary file, synced, and renamed over the log. Appends are not
// synced: the index is a cache, and an entry lost in a crash only costs the
// next event of that path its "changed" attribute.
const (
	indexFile  = "index"
	indexMagic = "SPENRIX1"
	opSet      = 1
	opDelete   = 2
	maxRecord  = 1 << 16
	// maxIndexFile bounds what is replayed; a larger file is taken as
	// corrupt and the index starts empty.
	maxIndexFile = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// index holds the last known Facts of each path of a tree (relative
// paths), bounded to max entries: past it an arbitrary entry is forgotten.
// With a directory it persists them (see the file format above); without,
// it is in memory only. It is safe for concurrent use.
type index struct {
	dir string
	max int

	mu      sync.Mutex
	m       map[string]Facts
	f       *os.File
	w       *bufio.Writer
	records int   // records in the log file
	err     error // first write error; appends stop after it
}

// openIndex opens (or creates) the index in dir; dir "" keeps it in
// memory. A missing or corrupt file is an empty index, never an error; an
// error means dir cannot be written.
func openIndex(dir string, max int) (*index, error) {
	ix := &index{dir: dir, max: max, m: make(map[string]Facts)}
	if dir == "" {
		return ix, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("index dir: %w", err)
	}
	p := filepath.Join(dir, indexFile)
	if st, err := os.Stat(p); err == nil && st.Size() <= maxIndexFile {
		if data, err := os.ReadFile(p); err == nil {
			decodeIndex(data, ix.apply)
		}
	}
	for k := range ix.m { // the log may hold more than the bound
		if len(ix.m) <= max {
			break
		}
		delete(ix.m, k)
	}
	if err := ix.compactLocked(); err != nil {
		return nil, err
	}
	return ix, nil
}

// apply replays one record.
func (ix *index) apply(op byte, rel string, f Facts) {
	switch op {
	case opSet:
		ix.m[rel] = f
	case opDelete:
		delete(ix.m, rel)
	}
}

// decodeIndex replays the records of an index file through fn and returns
// how many bytes were valid. It stops at the first record that is torn,
// fails its CRC or does not decode.
func decodeIndex(data []byte, fn func(op byte, rel string, f Facts)) int {
	if !strings.HasPrefix(string(data[:min(len(data), len(indexMagic))]), indexMagic) {
		return 0
	}
	off := len(indexMagic)
	for len(data)-off >= 8 {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		sum := binary.LittleEndian.Uint32(data[off+4:])
		if n > maxRecord || len(data)-off-8 < n {
			break
		}
		payload := data[off+8 : off+8+n]
		if crc32.Checksum(payload, castagnoli) != sum {
			break
		}
		op, rel, f, ok := decodeRecord(payload)
		if !ok {
			break
		}
		fn(op, rel, f)
		off += 8 + n
	}
	return off
}

func decodeRecord(b []byte) (op byte, rel string, f Facts, ok bool) {
	if len(b) < 1 {
		return 0, "", Facts{}, false
	}
	op, b = b[0], b[1:]
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	if rel, ok = str(); !ok || rel == "" {
		return 0, "", Facts{}, false
	}
	switch op {
	case opDelete:
		return op, rel, Facts{}, len(b) == 0
	case opSet:
	default:
		return 0, "", Facts{}, false
	}
	if f.Hash, ok = str(); !ok {
		return 0, "", Facts{}, false
	}
	size, k := binary.Varint(b)
	if k <= 0 || size < 0 {
		return 0, "", Facts{}, false
	}
	b = b[k:]
	f.Size = size
	if f.Mime, ok = str(); !ok {
		return 0, "", Facts{}, false
	}
	if len(b) != 2 {
		return 0, "", Facts{}, false
	}
	e := binary.LittleEndian.Uint16(b)
	if e > 8000 {
		return 0, "", Facts{}, false
	}
	f.Entropy = float64(e) / 1000
	return op, rel, f, true
}

func appendRecord(dst []byte, op byte, rel string, f Facts) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0, op)
	dst = binary.AppendUvarint(dst, uint64(len(rel)))
	dst = append(dst, rel...)
	if op == opSet {
		dst = binary.AppendUvarint(dst, uint64(len(f.Hash)))
		dst = append(dst, f.Hash...)
		dst = binary.AppendVarint(dst, f.Size)
		dst = binary.AppendUvarint(dst, uint64(len(f.Mime)))
		dst = append(dst, f.Mime...)
		dst = binary.LittleEndian.AppendUint16(dst, uint16(math.Round(min(max(f.Entropy, 0), 8)*1000)))
	}
	payload := dst[start+8:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, castagnoli))
	return dst
}

// compactLocked writes the live entries to a new log and renames it over
// the old one. ix.mu is held (or ix is not shared yet).
func (ix *index) compactLocked() error {
	if ix.dir == "" {
		return nil
	}
	if ix.f != nil {
		_ = ix.w.Flush()
		_ = ix.f.Close()
		ix.f, ix.w = nil, nil
	}
	p := filepath.Join(ix.dir, indexFile)
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	w := bufio.NewWriterSize(f, 64<<10)
	_, _ = w.WriteString(indexMagic)
	var rec []byte
	for rel, facts := range ix.m {
		if len(rel) > maxRecord/2 {
			continue
		}
		rec = appendRecord(rec[:0], opSet, rel, facts)
		_, _ = w.Write(rec)
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err == nil {
		err = atomicfile.SyncDir(ix.dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("index: compact: %w", err)
	}
	ix.f, err = os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	ix.w = bufio.NewWriterSize(ix.f, 64<<10)
	ix.records = len(ix.m)
	return nil
}

// get returns the last known facts of rel.
func (ix *index) get(rel string) (Facts, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	f, ok := ix.m[rel]
	return f, ok
}

// swap stores f as the facts of rel and returns the previous ones.
func (ix *index) swap(rel string, f Facts) (Facts, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	prev, ok := ix.m[rel]
	if !ok && len(ix.m) >= ix.max {
		for k := range ix.m {
			delete(ix.m, k)
			break
		}
	}
	ix.m[rel] = f
	ix.logLocked(opSet, rel, f)
	return prev, ok
}

// forget drops rel, and with tree everything below it too.
func (ix *index) forget(rel string, tree bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if _, ok := ix.m[rel]; ok {
		delete(ix.m, rel)
		ix.logLocked(opDelete, rel, Facts{})
	}
	if tree {
		prefix := rel + "/"
		for k := range ix.m {
			if strings.HasPrefix(k, prefix) {
				delete(ix.m, k)
				ix.logLocked(opDelete, k, Facts{})
			}
		}
	}
}

// move renames the entries below the directory from to below to.
func (ix *index) move(from, to string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	prefix := from + "/"
	for k, f := range ix.m {
		if strings.HasPrefix(k, prefix) {
			nk := to + "/" + k[len(prefix):]
			delete(ix.m, k)
			ix.m[nk] = f
			ix.logLocked(opDelete, k, Facts{})
			ix.logLocked(opSet, nk, f)
		}
	}
}

func (ix *index) logLocked(op byte, rel string, f Facts) {
	if ix.w == nil || ix.err != nil || len(rel) > maxRecord/2 {
		return
	}
	var buf [256]byte
	if _, err := ix.w.Write(appendRecord(buf[:0], op, rel, f)); err != nil {
		ix.err = err
		return
	}
	ix.records++
}

// flush writes buffered records to the file (not synced) and compacts the
// log when it has grown to more than twice the live entries.
func (ix *index) flush() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.w == nil {
		return ix.err
	}
	if ix.err == nil {
		ix.err = ix.w.Flush()
	}
	if ix.err == nil && ix.records > 2*len(ix.m)+4096 {
		ix.err = ix.compactLocked()
	}
	return ix.err
}

// close flushes and closes the log.
func (ix *index) close() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.f == nil {
		return nil
	}
	err := ix.w.Flush()
	if cerr := ix.f.Close(); err == nil {
		err = cerr
	}
	ix.f, ix.w = nil, nil
	if err != nil && !errors.Is(err, io.ErrClosedPipe) {
		return fmt.Errorf("index: %w", err)
	}
	return nil
}

// len is the number of entries.
func (ix *index) len() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return len(ix.m)
}
