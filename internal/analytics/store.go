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

// store keeps the rollups of one view in purpose-built append-only files:
// one directory per resolution, one segment file per fixed span of time
// (1s: 10 min, 1m: 1 day, 1h: 30 days) named by its start. A record is
// one closed pane:
//
//	u32 length | u32 CRC-32C of the payload | payload
//	payload: varint start, uvarint count, bytes, last seq,
//	         5 × uvarint section length (one section per dimension), sections
//	section: uvarint items, then per item uvarint key length, key, uvarint count, bytes
//
// Sections let a query by one dimension skip the others. Records of one
// resolution are appended in time order; a record repeated after a crash
// (written, then the state not saved) is read last-wins. On open, a torn
// record at the end of the newest segment is cut off. Retention deletes
// whole segments. See docs/analytics.md for why this and not SQLite or
// bbolt. Not safe for concurrent use: the engine holds its lock.
type store struct {
	dir       string
	retention [nRes]int64 // seconds
	state     storeState
	seg       [nRes]*os.File
	segStart  [nRes]int64
	buf       []byte
	sec       [nDims + 1][]byte
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

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func openStore(dir string, r Retention) (*store, error) {
	s := &store{dir: dir, state: storeState{Persisted: [nRes]int64{-1, -1, -1}}}
	s.retention = [nRes]int64{int64(r.Second / time.Second), int64(r.Minute / time.Second), int64(r.Hour / time.Second)}
	for res := range nRes {
		if err := os.MkdirAll(filepath.Join(dir, resNames[res]), 0o755); err != nil {
			return nil, fmt.Errorf("analytics: store: %w", err)
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
		segs, err := s.segments(res)
		if err != nil {
			return nil, err
		}
		if len(segs) == 0 {
			// No records: whatever the state says, there is nothing to skip.
			s.state.Persisted[res] = -1
			continue
		}
		last := segs[len(segs)-1]
		if err := repair(s.segPath(res, last)); err != nil {
			return nil, err
		}
	}
	if s.state.Persisted == [nRes]int64{-1, -1, -1} {
		s.state.Resume = 0 // missing history: rebuild from the journal's start
	}
	return s, nil
}

func (s *store) segPath(res int, start int64) string {
	return filepath.Join(s.dir, resNames[res], strconv.FormatInt(start, 10)+".roll")
}

// segments lists the segment starts of res, oldest first.
func (s *store) segments(res int) ([]int64, error) {
	des, err := os.ReadDir(filepath.Join(s.dir, resNames[res]))
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
	if s.seg[r.res] == nil || s.segStart[r.res] != seg {
		if s.seg[r.res] != nil {
			s.seg[r.res].Close()
		}
		f, err := os.OpenFile(s.segPath(r.res, seg), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			s.seg[r.res] = nil
			return fmt.Errorf("analytics: store: %w", err)
		}
		s.seg[r.res], s.segStart[r.res] = f, seg
		s.expire(r.res, r.start)
	}
	s.buf = encodeRollup(s.buf[:0], r, &s.sec)
	if _, err := s.seg[r.res].Write(s.buf); err != nil {
		return fmt.Errorf("analytics: store: %w", err)
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
	segs, err := s.segments(res)
	if err != nil {
		return
	}
	for _, st := range segs {
		if st+segSpan[res] <= newest-s.retention[res] {
			os.Remove(s.segPath(res, st))
		}
	}
}

func encodeRollup(dst []byte, r *rollup, sec *[nDims + 1][]byte) []byte {
	for i := range sec {
		sec[i] = sec[i][:0]
	}
	var counts [nDims + 1]uint64
	for _, it := range r.items {
		d := it.dim
		counts[d]++
		b := sec[d]
		b = binary.AppendUvarint(b, uint64(len(it.key)))
		b = append(b, it.key...)
		b = binary.AppendUvarint(b, uint64(it.count))
		b = binary.AppendUvarint(b, uint64(it.bytes))
		sec[d] = b
	}
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = binary.AppendVarint(dst, r.start)
	dst = binary.AppendUvarint(dst, uint64(r.count))
	dst = binary.AppendUvarint(dst, uint64(r.bytes))
	dst = binary.AppendUvarint(dst, r.lastSeq)
	var hdr [nDims + 1][]byte
	for d := range sec {
		hdr[d] = binary.AppendUvarint(nil, counts[d])
		dst = binary.AppendUvarint(dst, uint64(len(hdr[d])+len(sec[d])))
	}
	for d := range sec {
		dst = append(dst, hdr[d]...)
		dst = append(dst, sec[d]...)
	}
	p := dst[8:]
	binary.LittleEndian.PutUint32(dst, uint32(len(p)))
	binary.LittleEndian.PutUint32(dst[4:], crc32.Checksum(p, castagnoli))
	return dst
}

// decodeRollup decodes a record's payload, keeping the items of the
// dimensions in want (a bit per dimension; all when 0).
func decodeRollup(p []byte, res int, want uint) (*rollup, error) {
	r := &rollup{res: res}
	var err error
	rd := reader{b: p}
	r.start = rd.varint()
	r.count = int64(rd.uvarint())
	r.bytes = int64(rd.uvarint())
	r.lastSeq = rd.uvarint()
	var lens [nDims + 1]uint64
	for d := range lens {
		lens[d] = rd.uvarint()
	}
	if rd.err != nil {
		return nil, ErrCorrupt
	}
	for d := range lens {
		if lens[d] > uint64(len(rd.b)) {
			return nil, ErrCorrupt
		}
		secb := rd.b[:lens[d]]
		rd.b = rd.b[lens[d]:]
		if want != 0 && want&(1<<d) == 0 {
			continue
		}
		sr := reader{b: secb}
		n := sr.uvarint()
		if n > uint64(len(secb)) {
			return nil, ErrCorrupt
		}
		for range n {
			kl := sr.uvarint()
			if sr.err != nil || kl > uint64(len(sr.b)) {
				return nil, ErrCorrupt
			}
			key := string(sr.b[:kl])
			sr.b = sr.b[kl:]
			c, b := sr.uvarint(), sr.uvarint()
			r.items = append(r.items, rollupItem{dim: uint8(d), key: key, count: int64(c), bytes: int64(b)})
		}
		if sr.err != nil {
			err = ErrCorrupt
		}
	}
	return r, err
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

// read returns the rollups of res starting in [from, to), oldest first.
func (s *store) read(res int, from, to int64) ([]*rollup, error) {
	return s.readDims(res, from, to, 0)
}

// readDims is read keeping only the dimensions in want.
func (s *store) readDims(res int, from, to int64, want uint) ([]*rollup, error) {
	segs, err := s.segments(res)
	if err != nil {
		return nil, err
	}
	byStart := make(map[int64]*rollup)
	for _, st := range segs {
		if st+segSpan[res] <= from || st >= to {
			continue
		}
		b, err := os.ReadFile(s.segPath(res, st))
		if errors.Is(err, fs.ErrNotExist) {
			continue // expired meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("analytics: store: %w", err)
		}
		for len(b) > 0 {
			p, n, err := nextRecord(b)
			if err != nil {
				break // a torn end: what came before stands
			}
			b = b[n:]
			r, err := decodeRollup(p, res, want)
			if err != nil {
				return nil, fmt.Errorf("analytics: store %s: %w", resNames[res], err)
			}
			if r.start >= from && r.start < to {
				byStart[r.start] = r // last wins
			}
		}
	}
	out := make([]*rollup, 0, len(byStart))
	for _, r := range byStart {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	return out, nil
}

// oldest returns the start of the oldest retained segment of res, or -1.
func (s *store) oldest(res int) int64 {
	segs, err := s.segments(res)
	if err != nil || len(segs) == 0 {
		return -1
	}
	return segs[0]
}

func (s *store) close() {
	for i, f := range s.seg {
		if f != nil {
			f.Close()
			s.seg[i] = nil
		}
	}
}
