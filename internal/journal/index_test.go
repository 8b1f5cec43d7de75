package journal

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// segState is what Open found about each segment, for comparisons.
type segState struct {
	Base, Last    uint64
	Size, LastOff int64
	Index         []indexEntry
}

// segStates returns the segments of j, loading the index of those taken
// from the manifest.
func segStates(t *testing.T, j *Journal) []segState {
	t.Helper()
	j.segMu.RLock()
	segs := slices.Clone(j.segs)
	j.segMu.RUnlock()
	var out []segState
	for _, s := range segs {
		index := s.index
		if s.lazy != nil {
			var err error
			if index, err = s.lazy.get(s.path, j.log); err != nil {
				t.Fatalf("load index of %s: %v", s.path, err)
			}
		}
		out = append(out, segState{Base: s.base, Last: s.last, Size: s.size, LastOff: s.lastOff, Index: index})
	}
	return out
}

// openState opens dir, returns the segments Open found and how many it
// scanned, checks that a Reader returns seqs 1..want, and closes.
func openState(t *testing.T, dir string, want uint64) ([]segState, int) {
	t.Helper()
	j, err := Open(Options{Dir: dir, Logger: discardLogger()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer j.Close()
	if got := j.LastSeq(); got != want {
		t.Fatalf("LastSeq = %d, want %d", got, want)
	}
	r, err := j.Reader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for next := uint64(1); next <= want; next++ {
		seq, _, ok, err := r.TryNext()
		if err != nil || !ok || seq != next {
			t.Fatalf("TryNext = %d, %v, %v, want seq %d", seq, ok, err, next)
		}
	}
	return segStates(t, j), j.scannedAtOpen
}

var cmpSegs = cmp.AllowUnexported(indexEntry{})

// writeKiB writes n records of 1 KiB into a new journal with segments of
// segSize bytes and closes it cleanly.
func writeKiB(t *testing.T, segSize int64, n int) string {
	t.Helper()
	dir := t.TempDir()
	j, err := Open(Options{Dir: dir, SegmentSize: segSize, Fsync: FsyncNever, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	p := bytes.Repeat([]byte("k"), 1024)
	for range n / 10 {
		if _, err := j.Write(10, func(i int, seq uint64, dst []byte) ([]byte, error) {
			dst = append(dst, p...)
			dst[len(dst)-1] = byte(seq)
			return dst, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// removeManifest deletes dir's manifest, so that Open takes the
// per-segment path (index files, else scans).
func removeManifest(t *testing.T, dir string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, manifestName)); err != nil {
		t.Fatal(err)
	}
}

// TestOpenReadsIndexFiles: a cleanly closed journal opens from its
// manifest or else its index files, scanning only the last segment, and
// finds what a full scan finds; a journal without either (written before
// they existed) opens by scanning, the same, and gets them.
func TestOpenReadsIndexFiles(t *testing.T) {
	const n = 3000
	dir := writeKiB(t, 200<<10, n) // 16 segments, 3 index entries each
	files := segFiles(t, dir)
	if len(files) < 10 {
		t.Fatalf("%d segments, want >= 10", len(files))
	}
	withManifest, scanned := openState(t, dir, n)
	if scanned != 1 {
		t.Errorf("Open scanned %d segments with a manifest, want 1 (the last)", scanned)
	}
	removeManifest(t, dir)
	withIdx, scanned := openState(t, dir, n)
	if scanned != 1 {
		t.Errorf("Open scanned %d segments with index files present, want 1 (the last)", scanned)
	}
	if diff := cmp.Diff(withIdx, withManifest, cmpSegs); diff != "" {
		t.Errorf("segments from the manifest differ from index files (-index +manifest):\n%s", diff)
	}
	idx, _ := filepath.Glob(filepath.Join(dir, "*.idx"))
	for _, f := range idx {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	removeManifest(t, dir)
	without, scanned := openState(t, dir, n)
	if scanned != len(files) {
		t.Errorf("Open scanned %d segments without index files, want all %d", scanned, len(files))
	}
	if diff := cmp.Diff(without, withIdx, cmpSegs); diff != "" {
		t.Errorf("segments from index files differ from a scan (-scan +index):\n%s", diff)
	}
	if len(withIdx[0].Index) == 0 {
		t.Errorf("first segment has no index entries; the test does not exercise them")
	}
	idx, _ = filepath.Glob(filepath.Join(dir, "*.idx"))
	if len(idx) != len(files)-1 {
		t.Errorf("%d index files after opening an old journal, want %d", len(idx), len(files)-1)
	}
	if _, scanned := openState(t, dir, n); scanned != 1 {
		t.Errorf("second Open scanned %d segments, want 1", scanned)
	}
}

// TestTornIndexFile: an index file a crash tore (cut at any length,
// zeroed sectors), damaged (any byte flipped) or left stale (for another
// size) is not used: Open scans that segment, finds the same, and writes
// the index file again.
func TestTornIndexFile(t *testing.T) {
	const n = 600
	dir := writeKiB(t, 200<<10, n)
	files := segFiles(t, dir)
	victim := indexPath(files[1])
	good, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	if len(good) <= indexFooterSize {
		t.Fatalf("index file of %d bytes has no entries", len(good))
	}
	ref, _ := openState(t, dir, n)
	check := func(t *testing.T, damaged []byte) {
		t.Helper()
		if err := os.WriteFile(victim, damaged, 0o644); err != nil {
			t.Fatal(err)
		}
		// With the manifest, Open does not read the index file; the
		// Reader that needs it does, and scans the segment instead.
		got, scanned := openState(t, dir, n)
		if scanned != 1 {
			t.Errorf("Open with a manifest scanned %d segments, want 1 (the last)", scanned)
		}
		if diff := cmp.Diff(ref, got, cmpSegs); diff != "" {
			t.Errorf("segments with the manifest differ (-want +got):\n%s", diff)
		}
		if b, err := os.ReadFile(victim); err != nil || !bytes.Equal(b, good) {
			t.Errorf("index file not rewritten by the Reader: %v", err)
		}
		if err := os.WriteFile(victim, damaged, 0o644); err != nil {
			t.Fatal(err)
		}
		removeManifest(t, dir)
		got, scanned = openState(t, dir, n)
		if scanned != 2 {
			t.Errorf("Open scanned %d segments, want 2 (the damaged index's and the last)", scanned)
		}
		if diff := cmp.Diff(ref, got, cmpSegs); diff != "" {
			t.Errorf("segments differ (-want +got):\n%s", diff)
		}
		if b, err := os.ReadFile(victim); err != nil || !bytes.Equal(b, good) {
			t.Errorf("index file not rewritten: %v", err)
		}
	}
	t.Run("cut", func(t *testing.T) {
		for cut := 0; cut < len(good); cut += max(1, len(good)/97) {
			check(t, good[:cut])
		}
		check(t, good[:len(good)-1])
	})
	t.Run("zeroed sectors", func(t *testing.T) {
		for from := 0; from < len(good); from += sectorSize {
			b := bytes.Clone(good)
			clear(b[from:])
			check(t, b)
		}
	})
	t.Run("flipped byte", func(t *testing.T) {
		for i := len(good) - indexFooterSize - 20; i < len(good); i++ {
			b := bytes.Clone(good)
			b[i] ^= 0x10
			check(t, b)
		}
	})
	t.Run("stale", func(t *testing.T) {
		si, err := decodeIndex(good)
		if err != nil {
			t.Fatal(err)
		}
		si.size -= 10 // written when the segment was shorter
		check(t, encodeIndex(nil, si))
		si.size += 10
		si.base++ // another segment's
		check(t, encodeIndex(nil, si))
	})
}

// TestIndexFilesFollowRetention: retention deletes a segment's index file
// with it, and Open removes index files whose segment is gone.
func TestIndexFilesFollowRetention(t *testing.T) {
	dir := writeSegments(t, 2048, 300)
	stray := filepath.Join(dir, segName(999999)[:segNameDigits]+indexSuffix)
	if err := os.WriteFile(stray, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	j := open(t, Options{Dir: dir, SegmentSize: 2048, RetentionBytes: 4096})
	appendSeqs(t, j, 50, 10) // rolls: retention runs after each
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Errorf("stray index file still there: %v", err)
	}
	segs := segFiles(t, dir)
	idx, _ := filepath.Glob(filepath.Join(dir, "*.idx"))
	if len(idx) != len(segs)-1 {
		t.Errorf("%d index files for %d segments after retention, want %d", len(idx), len(segs), len(segs)-1)
	}
	for _, f := range idx {
		if _, err := os.Stat(f[:len(f)-len(indexSuffix)] + segSuffix); err != nil {
			t.Errorf("index file %s without its segment", f)
		}
	}
}

func FuzzDecodeIndex(f *testing.F) {
	f.Add(encodeIndex(nil, segIndex{base: 1, last: 0}))
	f.Add(encodeIndex(nil, segIndex{base: 7, last: 100, size: 9000, lastOff: 8800,
		index: []indexEntry{{seq: 40, off: 3000}, {seq: 80, off: 6000}}}))
	f.Add([]byte("SPJINDEX"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeIndex(b)
		if err != nil {
			return
		}
		// What decodes is canonical: it encodes back to the same bytes.
		if got := encodeIndex(nil, s); !bytes.Equal(got, b) {
			t.Fatalf("decode then encode changed the bytes:\n%x\n%x", b, got)
		}
	})
}
