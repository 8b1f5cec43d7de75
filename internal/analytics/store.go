package analytics

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/semprop/semprop/internal/atomicfile"
)

// store keeps the rollups of one view in purpose-built append-only files,
// one column per dimension: a directory per resolution and dimension
// (1m/type, 1m/dir, …), one segment file per fixed span of time (1s:
// 10 min, 1m: 1 day, 1h: 30 days) named by its start. A record is one
// closed pane's items of that dimension:
//
//	u32 length | u32 CRC-32C of the payload | payload
//	payload: varint start, uvarint count, bytes, last seq, items,
//	         per item uvarint key length, key, uvarint count, bytes
//
// A query by one dimension reads only that dimension's files. Records of
// one resolution are appended in time order; a record repeated after a
// crash (written, then the state not saved) is read last-wins. On open, a
// torn record at the end of each newest segment is cut off. Retention
// deletes whole segments. See docs/analytics.md for why this and not
// SQLite or bbolt. Not safe for concurrent use: the engine holds its lock;
// reads may run beside an append (a torn end is skipped).
type store struct {
	dir       string
	retention [nRes]int64 // seconds
	state     storeState
	seg       [nRes][nCols]*os.File
	segStart  [nRes]int64
	buf       []byte
	lastSave  time.Time
}

// storeState is the store's checkpoint (state.json).
type storeState struct {
	// Resume is the first seq the engine must read again after a restart.
	Resume uint64 `json:"resume"`
	// Persisted is, per resolution, the start of the newest record
	// written (-1: none).
	Persisted [nRes]int64 `json:"persisted"`
}

var segSpan = [nRes]int64{600, 86400, 30 * 86400}

// nCols are the stored dimensions: the four of the API and dimCDT.
const nCols = nDims + 1

var colNames = [nCols]string{"type", "comm", "uid", "dir", "cdt"}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func openStore(dir string, r Retention) (*store, error) {
	s := &store{dir: dir, state: storeState{Persisted: [nRes]int64{-1, -1, -1}}}
	s.retention = [nRes]int64{int64(r.Second / time.Second), int64(r.Minute / time.Second), int64(r.Hour / time.Second)}
	for res := range nRes {
		for c := range nCols {
			if err := os.MkdirAll(filepath.Join(dir, resNames[res], colNames[c]), 0o755); err != nil {
				return nil, fmt.Errorf("analytics: store: %w", err)
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("analytics: store: %w", err)
	default:
		if err := json.Unmarshal(b, &s.state); err != nil {
			// Derived data: a bad state means a rebuild, not a failure.
			s.state = storeState{Persisted: [nRes]int64{-1, -1, -1}}
		}
	}
	for res := range nRes {
		any := false
		for c := range nCols {
			segs, err := s.segments(res, c)
			if err != nil {
				return nil, err
			}
			if len(segs) == 0 {
				continue
			}
			any = true
			if err := repair(s.segPath(res, c, segs[len(segs)-1])); err != nil {
				return nil, err
			}
		}
		if !any {
			// No records: whatever the state says, there is nothing to skip.
			s.state.Persisted[res] = -1
		}
	}
	if s.state.Persisted == [nRes]int64{-1, -1, -1} {
		s.state.Resume = 0 // missing history: rebuild from the journal's start
	}
	return s, nil
}

func (s *store) segPath(res, col int, start int64) string {
	return filepath.Join(s.dir, resNames[res], colNames[col], strconv.FormatInt(start, 10)+".roll")
}

// segments lists the segment starts of res and column col, oldest first.
func (s *store) segments(res, col int) ([]int64, error) {
	des, err := os.ReadDir(filepath.Join(s.dir, resNames[res], colNames[col]))
	if err != nil {
		return nil, fmt.Errorf("analytics: store: %w", err)
	}
	var out []int64
	for _, de := range des {
		n, ok := strings.CutSuffix(de.Name(), ".roll")
		if !ok {
			continue
		}
		if v, err := strconv.ParseInt(n, 10, 64); err == nil {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// repair cuts a torn record off the end of a segment.
func repair(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("analytics: store: %w", err)
	}
	good := 0
	for good < len(b) {
		_, n, err := nextRecord(b[good:])
		if err != nil {
			break
		}
		good += n
	}
	if good < len(b) {
		if err := os.Truncate(path, int64(good)); err != nil {
			return fmt.Errorf("analytics: store: %w", err)
		}
	}
	return nil
}

// nextRecord returns the payload of the record at the start of b and the
// record's length.
func nextRecord(b []byte) ([]byte, int, error) {
	if len(b) < 8 {
		return nil, 0, io.ErrUnexpectedEOF
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n > len(b)-8 {
		return nil, 0, io.ErrUnexpectedEOF
	}
	p := b[8 : 8+n]
	if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return nil, 0, ErrCorrupt
	}
	return p, 8 + n, nil
}

// append writes r unless a record at or after its start was written
// before (a replay after a restart), then saves the state when due.
func (s *store) append(r *rollup, resume uint64) error {
	if r.start <= s.state.Persisted[r.res] {
		return nil
	}
	seg := r.start - mod(r.start, segSpan[r.res])
	if s.segStart[r.res] != seg || s.seg[r.res][0] == nil {
		for c, f := range s.seg[r.res] {
			if f != nil {
				f.Close()
				s.seg[r.res][c] = nil
			}
		}
		for c := range nCols {
			f, err := os.OpenFile(s.segPath(r.res, c, seg), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return fmt.Errorf("analytics: store: %w", err)
			}
			s.seg[r.res][c] = f
		}
		s.segStart[r.res] = seg
		s.expire(r.res, r.start)
	}
	// Items are sorted by dimension: one record per column.
	items := r.items
	for c := range nCols {
		n := 0
		for n < len(items) && int(items[n].dim) == c {
			n++
		}
		if n == 0 && c == dimCDT {
			continue // only the engine's own view keeps it
		}
		s.buf = encodeRollup(s.buf[:0], r, items[:n])
		items = items[n:]
		if _, err := s.seg[r.res][c].Write(s.buf); err != nil {
			return fmt.Errorf("analytics: store: %w", err)
		}
	}
	s.state.Persisted[r.res] = r.start
	if r.res != res1s || time.Since(s.lastSave) > 10*time.Second {
		return s.saveState(resume)
	}
	return nil
}

func (s *store) saveState(resume uint64) error {
	s.state.Resume = resume
	s.lastSave = time.Now()
	b, _ := json.Marshal(s.state)
	if err := atomicfile.Write(filepath.Join(s.dir, "state.json"), b, 0o644); err != nil {
		return fmt.Errorf("analytics: store: %w", err)
	}
	return nil
}

// expire deletes the segments of res that end before newest minus the
// retention.
func (s *store) expire(res int, newest int64) {
	for c := range nCols {
		segs, err := s.segments(res, c)
		if err != nil {
			return
		}
		for _, st := range segs {
			if st+segSpan[res] <= newest-s.retention[res] {
				os.Remove(s.segPath(res, c, st))
			}
		}
	}
}

// encodeRollup appends the record of r's totals and items (of one
// dimension) to dst.
func encodeRollup(dst []byte, r *rollup, items []rollupItem) []byte {
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = binary.AppendVarint(dst, r.start)
	dst = binary.AppendUvarint(dst, uint64(r.count))
	dst = binary.AppendUvarint(dst, uint64(r.bytes))
	dst = binary.AppendUvarint(dst, r.lastSeq)
	dst = binary.AppendUvarint(dst, uint64(len(items)))
	for _, it := range items {
		dst = binary.AppendUvarint(dst, uint64(len(it.key)))
		dst = append(dst, it.key...)
		dst = binary.AppendUvarint(dst, uint64(it.count))
		dst = binary.AppendUvarint(dst, uint64(it.bytes))
	}
	p := dst[8:]
	binary.LittleEndian.PutUint32(dst, uint32(len(p)))
	binary.LittleEndian.PutUint32(dst[4:], crc32.Checksum(p, castagnoli))
	return dst
}

// decodeRollup decodes a record's payload, its items of dimension dim.
func decodeRollup(p []byte, res, dim int) (*rollup, error) {
	r := &rollup{res: res}
	rd := reader{b: p}
	r.start = rd.varint()
	r.count = int64(rd.uvarint())
	r.bytes = int64(rd.uvarint())
	r.lastSeq = rd.uvarint()
	n := rd.uvarint()
	if rd.err != nil || n > uint64(len(rd.b)) {
		return nil, ErrCorrupt
	}
	r.items = make([]rollupItem, 0, n)
	for range n {
		kl := rd.uvarint()
		if rd.err != nil || kl > uint64(len(rd.b)) {
			return nil, ErrCorrupt
		}
		key := string(rd.b[:kl])
		rd.b = rd.b[kl:]
		c, b := rd.uvarint(), rd.uvarint()
		if rd.err != nil {
			return nil, ErrCorrupt
		}
		r.items = append(r.items, rollupItem{dim: uint8(dim), key: key, count: int64(c), bytes: int64(b)})
	}
	if len(rd.b) != 0 {
		return nil, ErrCorrupt
	}
	return r, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = ErrCorrupt
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = ErrCorrupt
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

// read returns the rollups of res starting in [from, to), oldest first,
// with the items of every dimension.
func (s *store) read(res int, from, to int64) ([]*rollup, error) {
	return s.readDims(res, from, to, 1<<nCols-1)
}

// readDims is read keeping only the dimensions in want (a bit each).
func (s *store) readDims(res int, from, to int64, want uint) ([]*rollup, error) {
	byStart := make(map[int64]*rollup)
	for c := range nCols {
		if want&(1<<c) == 0 {
			continue
		}
		col := make(map[int64]*rollup)
		if err := s.readCol(res, c, from, to, col); err != nil {
			return nil, err
		}
		for st, r := range col {
			if acc, ok := byStart[st]; ok {
				acc.items = append(acc.items, r.items...)
				continue
			}
			byStart[st] = r
		}
	}
	out := make([]*rollup, 0, len(byStart))
	for _, r := range byStart {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	return out, nil
}

func (s *store) readCol(res, c int, from, to int64, byStart map[int64]*rollup) error {
	segs, err := s.segments(res, c)
	if err != nil {
		return err
	}
	for _, st := range segs {
		if st+segSpan[res] <= from || st >= to {
			continue
		}
		b, err := os.ReadFile(s.segPath(res, c, st))
		if errors.Is(err, fs.ErrNotExist) {
			continue // expired meanwhile
		}
		if err != nil {
			return fmt.Errorf("analytics: store: %w", err)
		}
		for len(b) > 0 {
			p, n, err := nextRecord(b)
			if err != nil {
				break // a torn end: what came before stands
			}
			b = b[n:]
			r, err := decodeRollup(p, res, c)
			if err != nil {
				return fmt.Errorf("analytics: store %s/%s: %w", resNames[res], colNames[c], err)
			}
			if r.start >= from && r.start < to {
				byStart[r.start] = r // last wins
			}
		}
	}
	return nil
}

// oldest returns the start of the oldest retained segment of res, or -1.
func (s *store) oldest(res int) int64 {
	segs, err := s.segments(res, dimType)
	if err != nil || len(segs) == 0 {
		return -1
	}
	return segs[0]
}

func (s *store) close() {
	for res := range s.seg {
		for c, f := range s.seg[res] {
			if f != nil {
				f.Close()
				s.seg[res][c] = nil
			}
		}
	}
}
