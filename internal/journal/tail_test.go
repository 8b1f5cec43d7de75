package journal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestBitFlipInLastRecordAfterCleanClose: a complete record whose CRC fails
// at the end of a cleanly closed journal is corruption, not a torn write:
// Open must refuse it, naming the file and the record's offset, instead of
// cutting it and handing its (acknowledged) seq to the next publish.
func TestBitFlipInLastRecordAfterCleanClose(t *testing.T) {
	const n = 50
	dir := writeSegments(t, 2048, n)
	files := segFiles(t, dir)
	last := files[len(files)-1]
	offs := recordOffsets(t, last)
	off := offs[len(offs)-1]
	modifyFile(t, last, func(b []byte) []byte { b[off+headerSize+2] ^= 0x10; return b })

	log, logs := bufLogger()
	j, err := Open(Options{Dir: dir, SegmentSize: 2048, Logger: log})
	if err == nil {
		first, aerr := j.Append(t.Context(), []byte("next"))
		j.Close()
		t.Fatalf("Open accepted a bit flip in acknowledged record seq %d (next Append got seq %d, %v); log:\n%s", n, first, aerr, logs)
	}
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("Open = %v, want a *CorruptError", err)
	}
	if ce.File != last || ce.Offset != off || !strings.Contains(ce.Reason, "crc mismatch") {
		t.Errorf("CorruptError = {%s, %d, %q}, want {%s, %d, ...crc mismatch...}", ce.File, ce.Offset, ce.Reason, last, off)
	}
}

// TestDamageAfterCleanCloseFailsOpen: after a clean Close the last segment
// must be exactly as Close left it; whatever differs is refused with the
// file and offset, never cut as a torn tail.
func TestDamageAfterCleanCloseFailsOpen(t *testing.T) {
	const n = 50
	tests := []struct {
		name string
		// damage returns the file and offset the error must name and a
		// word of the reason.
		damage func(t *testing.T, dir, last string, offs []int64) (string, int64, string)
	}{
		{"header bit flip in last record", func(t *testing.T, dir, last string, offs []int64) (string, int64, string) {
			off := offs[len(offs)-1]
			modifyFile(t, last, func(b []byte) []byte { b[off+9] ^= 0x01; return b })
			return last, off, "crc mismatch"
		}},
		{"last byte of last record zeroed", func(t *testing.T, dir, last string, offs []int64) (string, int64, string) {
			off := offs[len(offs)-1]
			modifyFile(t, last, func(b []byte) []byte { b[len(b)-1] = 0; return b })
			return last, off, "crc mismatch"
		}},
		{"last record cut short", func(t *testing.T, dir, last string, offs []int64) (string, int64, string) {
			off := offs[len(offs)-1]
			modifyFile(t, last, func(b []byte) []byte { return b[:len(b)-3] })
			return last, off, "past end"
		}},
		{"last record removed whole", func(t *testing.T, dir, last string, offs []int64) (string, int64, string) {
			off := offs[len(offs)-1]
			modifyFile(t, last, func(b []byte) []byte { return b[:off] })
			return last, off, "closed cleanly"
		}},
		{"zeros appended", func(t *testing.T, dir, last string, offs []int64) (string, int64, string) {
			size := mustSize(t, last)
			modifyFile(t, last, func(b []byte) []byte { return append(b, make([]byte, 64)...) })
			return last, size, "crc mismatch"
		}},
		{"short garbage appended", func(t *testing.T, dir, last string, offs []int64) (string, int64, string) {
			size := mustSize(t, last)
			modifyFile(t, last, func(b []byte) []byte { return append(b, 1, 2, 3) })
			return last, size, "short header"
		}},
		{"last segment deleted", func(t *testing.T, dir, last string, offs []int64) (string, int64, string) {
			if err := os.Remove(last); err != nil {
				t.Fatal(err)
			}
			return last, 0, "segment missing"
		}},
		{"segment added after close", func(t *testing.T, dir, last string, offs []int64) (string, int64, string) {
			extra := joinPath(dir, n+1)
			b := append(make([]byte, headerSize), "x"...)
			putHeader(b, n+1)
			if err := os.WriteFile(extra, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return extra, 0, "not written by this journal"
		}},
		{"marker damaged", func(t *testing.T, dir, last string, offs []int64) (string, int64, string) {
			marker := filepath.Join(dir, cleanName)
			modifyFile(t, marker, func(b []byte) []byte { b[12] ^= 0x80; return b })
			return marker, 0, "marker crc mismatch"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeSegments(t, 2048, n)
			files := segFiles(t, dir)
			last := files[len(files)-1]
			file, off, reason := tt.damage(t, dir, last, recordOffsets(t, last))
			j, err := Open(Options{Dir: dir, SegmentSize: 2048, Logger: discardLogger()})
			if err == nil {
				j.Close()
				t.Fatalf("Open accepted the damaged journal (LastSeq %d)", j.LastSeq())
			}
			var ce *CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want a *CorruptError", err)
			}
			if ce.File != file || ce.Offset != off || !strings.Contains(ce.Reason, reason) {
				t.Errorf("CorruptError = {%s, %d, %q}, want {%s, %d, ...%q...}", ce.File, ce.Offset, ce.Reason, file, off, reason)
			}
			// The refusal leaves the evidence in place: a second Open
			// refuses the same way.
			if _, err2 := Open(Options{Dir: dir, Logger: discardLogger()}); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("second Open = %v, want %v again", err2, err)
			}
		})
	}
}

// TestTailAfterCrash: without the clean-shutdown marker (a crash), a final
// record whose CRC fails is a torn write only if it has the shape of one:
// zero from a sector boundary (or from its start) to the end of the file.
// Anything else, such as a flipped bit, is corruption.
func TestTailAfterCrash(t *testing.T) {
	const n = 10
	big := make([]byte, 3000) // each record spans several sectors
	for i := range big {
		big[i] = byte(i%251) + 1
	}
	tests := []struct {
		name   string
		damage func(b []byte, off int64) []byte
		torn   bool
	}{
		{"bit flip in final record", func(b []byte, off int64) []byte { b[off+headerSize+1000] ^= 0x04; return b }, false},
		{"bit flip in final record, zeros follow", func(b []byte, off int64) []byte {
			b[len(b)-5] ^= 0x04
			return append(b, make([]byte, 300)...)
		}, false},
		{"final record zero from mid-sector", func(b []byte, off int64) []byte {
			// Zeros from an offset that is not a sector boundary, ending
			// before the next one: not lost sectors.
			end := int64(len(b))
			from := (end-1)/sectorSize*sectorSize + 7
			if from >= end {
				from = end - 1
			}
			clear(b[from:])
			return b
		}, false},
		{"final record zero from a sector boundary", func(b []byte, off int64) []byte {
			from := (off+headerSize)/sectorSize*sectorSize + sectorSize
			clear(b[from:])
			return b
		}, true},
		{"final record zero from a sector boundary, zeros follow", func(b []byte, off int64) []byte {
			from := (off+headerSize)/sectorSize*sectorSize + 2*sectorSize
			clear(b[from:])
			return append(b, make([]byte, 4096)...)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			j := open(t, Options{Dir: dir})
			for range n {
				if _, err := j.Append(t.Context(), big); err != nil {
					t.Fatal(err)
				}
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			simulateCrash(t, dir)
			seg := segFiles(t, dir)[0]
			offs := recordOffsets(t, seg)
			off := offs[len(offs)-1]
			modifyFile(t, seg, func(b []byte) []byte { return tt.damage(b, off) })
			log, logs := bufLogger()
			j2, err := Open(Options{Dir: dir, Logger: log})
			if !tt.torn {
				var ce *CorruptError
				if !errors.As(err, &ce) || ce.File != seg || ce.Offset != off {
					if err == nil {
						j2.Close()
					}
					t.Fatalf("Open = %v, want a *CorruptError for %s at offset %d", err, seg, off)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open = %v, want the torn tail cut", err)
			}
			defer j2.Close()
			if got := j2.LastSeq(); got != n-1 {
				t.Errorf("LastSeq = %d, want %d", got, n-1)
			}
			if !strings.Contains(logs.String(), "torn tail") {
				t.Errorf("cut not logged:\n%s", logs)
			}
		})
	}
}

// TestCleanMarkerLifecycle: Close leaves the marker, Open removes it before
// anything can be written (so a crash after Open is a crash), and a Close
// that could not write everything leaves none.
func TestCleanMarkerLifecycle(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, cleanName)
	j := open(t, Options{Dir: dir})
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("marker in a new journal: %v", err)
	}
	appendSeqs(t, j, 5, 2)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(marker)
	if err != nil {
		t.Fatalf("no marker after Close: %v", err)
	}
	m, err := decodeClean(b)
	if err != nil || m != (cleanMarker{base: 1, size: mustSize(t, joinPath(dir, 1)), last: 5}) {
		t.Errorf("marker = %+v, %v", m, err)
	}
	j2 := open(t, Options{Dir: dir, noMap: true}) // a closed descriptor fails a write, not a copy
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("marker still there after Open: %v", err)
	}
	// A journal that failed does not claim a clean shutdown.
	j2.active.Close()
	if _, err := j2.Append(t.Context(), []byte("x")); !errors.Is(err, ErrIO) {
		t.Errorf("Append after the file was closed = %v, want ErrIO", err)
	}
	j2.Close()
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("marker written by a Close after a write failure: %v", err)
	}
	j3 := open(t, Options{Dir: dir})
	if got := j3.LastSeq(); got != 5 {
		t.Errorf("LastSeq after reopen = %d, want 5", got)
	}
}

// readSyscalls returns the read(2)/pread(2) calls this process made, from
// /proc/self/io; ok is false where that is not available.
func readSyscalls(t *testing.T) (n uint64, ok bool) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "syscr: "); found {
			n, err := strconv.ParseUint(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// TestReaderTailOneRead: a Reader following the active segment reads each
// new record with one pread(2): a short read is what is there, not a
// reason to read again and find the end of the file.
func TestReaderTailOneRead(t *testing.T) {
	if _, ok := readSyscalls(t); !ok {
		t.Skip("no /proc/self/io: cannot count read system calls")
	}
	j := open(t, Options{Fsync: FsyncNever})
	r, err := j.Reader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	const n = 2000
	before, _ := readSyscalls(t)
	for i := range n {
		first, err := j.Write(1, enc100)
		if err == nil {
			err = j.WaitDurable(ctx, first)
		}
		if err != nil {
			t.Fatal(err)
		}
		seq, _, ok, err := r.TryNext()
		if err != nil || !ok || seq != first {
			t.Fatalf("record %d: TryNext = %d, %v, %v; want seq %d", i, seq, ok, err, first)
		}
	}
	after, _ := readSyscalls(t)
	reads := after - before
	// Allow a few for the first positioning and for noise from the
	// runtime; the old code made two per record.
	if reads > n+n/10 {
		t.Errorf("tailing %d records took %d read system calls, want about one per record", n, reads)
	}
}
