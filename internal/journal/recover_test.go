package journal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeSegments creates a closed journal in a temp dir with n records.
func writeSegments(t *testing.T, segSize int64, n int) string {
	t.Helper()
	dir := t.TempDir()
	j, err := Open(Options{Dir: dir, SegmentSize: segSize, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	appendSeqs(t, j, n, 10)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// recordOffsets returns the offset of every record in a segment file.
func recordOffsets(t *testing.T, path string) []int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := 0; off+headerSize <= len(data); {
		offs = append(offs, int64(off))
		l, _, _ := parseHeader(data[off:])
		off += headerSize + int(l)
	}
	return offs
}

// simulateCrash makes a cleanly closed journal in dir look like one whose
// process died: the clean-shutdown marker is removed.
func simulateCrash(t *testing.T, dir string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, cleanName)); err != nil {
		t.Fatalf("no clean-shutdown marker after Close: %v", err)
	}
}

func modifyFile(t *testing.T, path string, f func([]byte) []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptionFailsOpen damages a journal in ways a crash cannot and
// checks that Open refuses it with a *CorruptError naming file and offset.
// Each case runs on a journal without index files (written before they
// existed, or with all of them lost: every segment is scanned) and with
// them: then damage inside the records of a sealed segment whose index
// file checks out (sealed) is not seen by Open, which does not read those
// records, but by the Reader that reaches them, with the same error.
func TestCorruptionFailsOpen(t *testing.T) {
	tests := []struct {
		name   string
		sealed bool // damage inside a sealed segment's records, same size
		// manifestReason is set when Open does not see the damage with the
		// manifest (it does not stat synced segments) and the Reader
		// reports it, with this reason when the index file is used.
		manifestReason string
		// damage modifies the journal in dir and returns the file and
		// offset the error must name and a word the reason must contain.
		damage func(t *testing.T, files []string) (file string, off int64, reason string)
	}{
		{"flipped payload byte in non-tail segment", true, "crc mismatch", func(t *testing.T, files []string) (string, int64, string) {
			offs := recordOffsets(t, files[1])
			off := offs[2]
			modifyFile(t, files[1], func(b []byte) []byte { b[off+headerSize+3] ^= 0x40; return b })
			return files[1], off, "crc mismatch"
		}},
		{"flipped header byte in non-tail segment", true, "crc mismatch", func(t *testing.T, files []string) (string, int64, string) {
			offs := recordOffsets(t, files[0])
			off := offs[1]
			modifyFile(t, files[0], func(b []byte) []byte { b[off+5] ^= 0x01; return b })
			return files[0], off, "crc mismatch"
		}},
		{"flipped byte mid tail segment, valid records follow", false, "", func(t *testing.T, files []string) (string, int64, string) {
			last := files[len(files)-1]
			offs := recordOffsets(t, last)
			if len(offs) < 3 {
				t.Fatalf("tail segment has %d records, want >= 3", len(offs))
			}
			off := offs[1]
			modifyFile(t, last, func(b []byte) []byte { b[off+headerSize] ^= 0xff; return b })
			return last, off, "crc mismatch"
		}},
		{"truncated non-tail segment", false, "cut short", func(t *testing.T, files []string) (string, int64, string) {
			offs := recordOffsets(t, files[0])
			off := offs[len(offs)-1]
			modifyFile(t, files[0], func(b []byte) []byte { return b[:off+headerSize+1] })
			return files[0], off, "past end"
		}},
		{"missing middle segment", false, "", func(t *testing.T, files []string) (string, int64, string) {
			if err := os.Remove(files[2]); err != nil {
				t.Fatal(err)
			}
			return files[3], 0, "discontinuity"
		}},
		{"record with wrong seq", true, "discontinuity", func(t *testing.T, files []string) (string, int64, string) {
			offs := recordOffsets(t, files[1])
			off := offs[1]
			modifyFile(t, files[1], func(b []byte) []byte {
				l, _, seq := parseHeader(b[off:])
				putHeader(b[off:off+headerSize+int64(l)], seq+1) // valid CRC, wrong seq
				return b
			})
			return files[1], off, "discontinuity"
		}},
	}
	for _, tt := range tests {
		for _, mode := range []struct {
			name                string
			withIndex, manifest bool
		}{
			{"without index files", false, false},
			{"with index files", true, false},
			{"with manifest", true, true},
			{"with manifest without index files", false, true},
		} {
			t.Run(tt.name+"/"+mode.name, func(t *testing.T) {
				damage := tt.damage
				byReader := mode.withIndex && tt.sealed
				if mode.manifest && tt.manifestReason != "" {
					byReader = true
					if mode.withIndex {
						damage = func(t *testing.T, files []string) (string, int64, string) {
							file, off, _ := tt.damage(t, files)
							return file, off, tt.manifestReason
						}
					}
				}
				testCorruption(t, damage, mode.withIndex, mode.manifest, byReader)
			})
		}
	}
}

// testCorruption damages a journal; byReader says that Open succeeds and
// the Reader reports the damage.
func testCorruption(t *testing.T, damage func(*testing.T, []string) (string, int64, string), withIndex, withManifest, byReader bool) {
	dir := writeSegments(t, 2048, 200)
	files := segFiles(t, dir)
	if len(files) < 5 {
		t.Fatalf("%d segments, want >= 5", len(files))
	}
	idx, _ := filepath.Glob(filepath.Join(dir, "*.idx"))
	if len(idx) != len(files)-1 {
		t.Fatalf("%d index files for %d segments, want one per sealed segment", len(idx), len(files))
	}
	if !withIndex {
		for _, f := range idx {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !withManifest {
		if err := os.Remove(filepath.Join(dir, manifestName)); err != nil {
			t.Fatal(err)
		}
	}
	file, off, reason := damage(t, files)
	j, err := Open(Options{Dir: dir, Logger: discardLogger()})
	if byReader {
		if err != nil {
			t.Fatalf("Open = %v, want success (the index files describe the damaged segment)", err)
		}
		defer j.Close()
		r, rerr := j.Reader(1)
		if rerr != nil {
			t.Fatal(rerr)
		}
		defer r.Close()
		for ok := true; ok && err == nil; {
			_, _, ok, err = r.TryNext()
		}
		if err == nil {
			t.Fatalf("Reader read every record of the damaged journal")
		}
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open (or Reader) = %v, want ErrCorrupt", err)
	}
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("error %T is not a *CorruptError", err)
	}
	if ce.File != file || ce.Offset != off || !strings.Contains(ce.Reason, reason) {
		t.Errorf("CorruptError = {%s, %d, %q}, want {%s, %d, ...%q...}", ce.File, ce.Offset, ce.Reason, file, off, reason)
	}
	if msg := err.Error(); !strings.Contains(msg, file) || !strings.Contains(msg, fmt.Sprint(off)) {
		t.Errorf("error %q does not name file and offset", msg)
	}
}

func TestTornTailRecovered(t *testing.T) {
	const n = 50
	tests := []struct {
		name string
		// tear damages the last segment and returns how many records survive
		// and how many bytes must be cut.
		tear func(t *testing.T, last string) (keep uint64, cut int64)
	}{
		{"garbage appended", func(t *testing.T, last string) (uint64, int64) {
			garbage := []byte("\xde\xad\xbe\xef garbage that is not a record \x01\x02\x03")
			modifyFile(t, last, func(b []byte) []byte { return append(b, garbage...) })
			return n, int64(len(garbage))
		}},
		{"short header", func(t *testing.T, last string) (uint64, int64) {
			modifyFile(t, last, func(b []byte) []byte { return append(b, 1, 2, 3, 4, 5) })
			return n, 5
		}},
		{"cut mid-payload", func(t *testing.T, last string) (uint64, int64) {
			offs := recordOffsets(t, last)
			off := offs[len(offs)-1]
			var size int64
			modifyFile(t, last, func(b []byte) []byte { size = int64(len(b)); return b[:size-3] })
			return n - 1, size - 3 - off
		}},
		{"cut mid-header", func(t *testing.T, last string) (uint64, int64) {
			offs := recordOffsets(t, last)
			off := offs[len(offs)-1]
			modifyFile(t, last, func(b []byte) []byte { return b[:off+7] })
			return n - 1, 7
		}},
		{"final record's sectors lost (read as zeros)", func(t *testing.T, last string) (uint64, int64) {
			offs := recordOffsets(t, last)
			off := offs[len(offs)-1]
			var size int64
			modifyFile(t, last, func(b []byte) []byte { size = int64(len(b)); clear(b[off:]); return b })
			return n - 1, size - off
		}},
		{"zeros after the last record", func(t *testing.T, last string) (uint64, int64) {
			modifyFile(t, last, func(b []byte) []byte { return append(b, make([]byte, 4096)...) })
			return n, 4096
		}},
		{"final record lost, zeros follow", func(t *testing.T, last string) (uint64, int64) {
			offs := recordOffsets(t, last)
			off := offs[len(offs)-1]
			var size int64
			modifyFile(t, last, func(b []byte) []byte {
				size = int64(len(b))
				clear(b[off:])
				return append(b, make([]byte, 100)...)
			})
			return n - 1, size + 100 - off
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeSegments(t, 2048, n)
			simulateCrash(t, dir)
			files := segFiles(t, dir)
			last := files[len(files)-1]
			keep, cut := tt.tear(t, last)
			log, buf := bufLogger()
			j := open(t, Options{Dir: dir, SegmentSize: 2048, Logger: log})
			if got := j.Stats().Truncated; got != cut {
				t.Errorf("Stats().Truncated = %d, want %d", got, cut)
			}
			if got := j.LastSeq(); got != keep {
				t.Errorf("LastSeq() = %d, want %d", got, keep)
			}
			logs := buf.String()
			if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "torn tail") ||
				!strings.Contains(logs, last) || !strings.Contains(logs, fmt.Sprintf("bytes=%d", cut)) {
				t.Errorf("log does not report the torn tail with file and bytes:\n%s", logs)
			}
			appendSeqs(t, j, 10, 3)
			if diff := diffRecs(wantRecs(1, keep+10), readAll(t, j, 1)); diff != "" {
				t.Errorf("read back (-want +got):\n%s", diff)
			}
			j.Close()
			j2 := open(t, Options{Dir: dir, SegmentSize: 2048})
			if got := j2.Stats().Truncated; got != 0 {
				t.Errorf("second reopen truncated %d bytes, want 0", got)
			}
			if got := j2.LastSeq(); got != keep+10 {
				t.Errorf("LastSeq after second reopen = %d, want %d", got, keep+10)
			}
		})
	}
}

func TestOpenLogsScan(t *testing.T) {
	dir := writeSegments(t, 2048, 100)
	log, buf := bufLogger()
	j := open(t, Options{Dir: dir, Logger: log})
	_ = j
	logs := buf.String()
	for _, want := range []string{"journal: opened", "segments=", "bytes=", "scan="} {
		if !strings.Contains(logs, want) {
			t.Errorf("open log lacks %q:\n%s", want, logs)
		}
	}
}
