package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// SegmentReport describes one segment file as Verify found it.
type SegmentReport struct {
	File    string
	First   uint64 // the seq its name says it starts at
	Last    uint64 // its last valid seq (First-1 when it holds none)
	Records uint64
	Bytes   int64 // the file's size
	// FirstPayload and LastPayload are its first and last valid records'
	// payloads (nil when it holds none), for a caller that decodes them.
	FirstPayload, LastPayload []byte
	// Torn is the number of bytes after the last valid record that a
	// restart would cut as a torn write (last segment, unclean shutdown).
	Torn    int64
	TornWhy string
	// Problem is the damage found, or nil.
	Problem error
}

// Report is what Verify found in a journal directory.
type Report struct {
	Dir      string
	Clean    bool // closed cleanly: a clean-shutdown marker is present
	Segments []SegmentReport
	// Problems lists every problem found, segment problems included; an
	// empty list means the journal would open without losing anything.
	Problems []error
}

// Verify checks a journal directory offline, without changing anything: it
// reads every record of every segment, checking CRCs and seq continuity
// within and across segments, the clean-shutdown marker, and that the
// manifest's entries match the segments they describe. Unlike Open
// it does not stop at the first problem. It must not run on a journal that
// is open for writing (its last segment may be mid-write).
func Verify(dir string) (*Report, error) {
	bases, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	r := &Report{Dir: dir}
	marker, clean, err := readClean(dir)
	if err != nil {
		r.Problems = append(r.Problems, fmt.Errorf("clean-shutdown marker: %w", err))
	}
	r.Clean = clean
	if clean {
		if err := checkCleanSegments(dir, bases, marker); err != nil {
			r.Problems = append(r.Problems, err)
		}
	}
	// Manifest entries Open would use; one that does not match its
	// segment would hide damage from Open. A manifest that does not check
	// out is no problem: Open does not use it.
	var entries map[uint64]manifestEntry
	if b, err := os.ReadFile(filepath.Join(dir, manifestName)); err == nil {
		list, _, why := decodeManifest(b)
		if why == nil {
			entries = make(map[uint64]manifestEntry, len(list))
			for _, e := range list {
				entries[e.base] = e
			}
		}
	}
	var prevLast uint64
	prevBad := false // the previous segment is damaged: its end is unknown
	for i, base := range bases {
		path := joinPath(dir, base)
		sr := SegmentReport{File: path, First: base, Last: base - 1}
		last := i == len(bases)-1
		if i > 0 && !prevBad && prevLast+1 != base {
			sr.Problem = &CorruptError{File: path, Offset: 0, Reason: fmt.Sprintf(
				"seq gap between segments: the previous segment ends at %d, this one starts at %d", prevLast, base)}
		}
		if err := verifySegment(&sr, last && !clean); err != nil && sr.Problem == nil {
			sr.Problem = err
		}
		if clean && last && sr.Problem == nil && (marker.size != sr.Bytes || marker.last != sr.Last) {
			sr.Problem = &CorruptError{File: path, Offset: min(marker.size, sr.Bytes), Reason: fmt.Sprintf(
				"the journal was closed cleanly at %d bytes, seq %d; the segment has %d bytes, seq %d",
				marker.size, marker.last, sr.Bytes, sr.Last)}
		}
		if e, ok := entries[base]; ok && !last && sr.Problem == nil && (e.synced || e.size == sr.Bytes) &&
			(e.size != sr.Bytes || e.last != sr.Last) {
			sr.Problem = &CorruptError{File: path, Offset: min(e.size, sr.Bytes), Reason: fmt.Sprintf(
				"the manifest says %d bytes up to seq %d; the segment has %d bytes up to seq %d",
				e.size, e.last, sr.Bytes, sr.Last)}
		}
		if sr.Problem != nil {
			r.Problems = append(r.Problems, sr.Problem)
		}
		prevLast, prevBad = sr.Last, sr.Problem != nil
		r.Segments = append(r.Segments, sr)
	}
	return r, nil
}

// verifySegment scans one segment into sr.
func verifySegment(sr *SegmentReport, tornOK bool) error {
	f, err := os.Open(sr.File)
	if err != nil {
		return fmt.Errorf("journal: open %s: %w", sr.File, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("journal: stat %s: %w", sr.File, err)
	}
	sr.Bytes = st.Size()
	res, err := scanSegment(f, st.Size(), sr.File, sr.First, tornOK)
	var ce *CorruptError
	if errors.As(err, &ce) {
		res.size = ce.Offset // the valid records end where the damage starts
	}
	sr.Last = res.last
	sr.Records = res.last + 1 - sr.First
	sr.Torn, sr.TornWhy = res.torn, res.tornWhy
	if sr.Records > 0 {
		sr.FirstPayload, _ = readPayloadAt(f, 0)
		if off := lastRecordOffset(f, res); off >= 0 {
			sr.LastPayload, _ = readPayloadAt(f, off)
		}
	}
	return err
}

// readPayloadAt reads the payload of the record at off.
func readPayloadAt(f *os.File, off int64) ([]byte, error) {
	hdr := make([]byte, headerSize)
	if _, err := f.ReadAt(hdr, off); err != nil {
		return nil, err
	}
	length, _, _ := parseHeader(hdr)
	if length > MaxRecordSize {
		return nil, fmt.Errorf("record length %d", length)
	}
	p := make([]byte, length)
	_, err := f.ReadAt(p, off+headerSize)
	return p, err
}

// lastRecordOffset finds the offset of the last valid record of a scanned
// segment, walking from its last index entry (-1 if it cannot).
func lastRecordOffset(f *os.File, res scanResult) int64 {
	off := int64(0)
	if n := len(res.index); n > 0 {
		off = res.index[n-1].off
	}
	hdr := make([]byte, headerSize)
	for {
		if _, err := f.ReadAt(hdr, off); err != nil {
			return -1
		}
		length, _, _ := parseHeader(hdr)
		next := off + headerSize + int64(length)
		if next >= res.size {
			return off
		}
		off = next
	}
}
