package journal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestSuiteMapped runs this package's tests again with every active segment
// memory-mapped, whatever the fsync policy (the journal maps only with
// fsync=never), so that the mapped write path meets every test written for
// the pwrite(2) one: rolls, retention, readers following the active
// segment, a full disk, failed fsyncs, recovery.
func TestSuiteMapped(t *testing.T) {
	if os.Getenv(mapAllEnv) == "1" {
		t.Skip("this is the mapped run")
	}
	if testing.Short() {
		t.Skip("runs the package's tests a second time")
	}
	if runtime.GOOS != "linux" {
		t.Skip("segments are mapped on Linux only")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.count=1", "-test.timeout=7m",
		"-test.skip=^(TestSuiteMapped|TestCrash|TestCrashChild)$")
	cmd.Env = append(os.Environ(), mapAllEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the tests over mapped segments failed: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("PASS")) {
		t.Fatalf("no PASS from the mapped run:\n%s", out)
	}
}

// TestMappedWriteIsWrittenOnReturn: with fsync=never the active segment is
// mapped and Write copies its records into it before returning, so they are
// durable (written to the OS) without waiting for the flusher; Close cuts
// the preallocated file back to its records.
func TestMappedWriteIsWrittenOnReturn(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("segments are mapped on Linux only")
	}
	dir := t.TempDir()
	j := open(t, Options{Dir: dir, Fsync: FsyncNever, SegmentSize: 8 << 10})
	for i := range 300 {
		first, err := j.Write(1+i%3, encSeq)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := j.DurableSeq(), first+uint64(i%3); got != want {
			t.Fatalf("DurableSeq right after Write = %d, want %d", got, want)
		}
	}
	st := j.Stats()
	if st.Flushes == 0 || st.WriterFlushes != st.Flushes {
		t.Errorf("Flushes %d, WriterFlushes %d: want every batch copied by its writer", st.Flushes, st.WriterFlushes)
	}
	if st.Segments < 5 {
		t.Errorf("Segments = %d, want rolls (8 KiB segments)", st.Segments)
	}
	j.segMu.RLock()
	active := j.segs[len(j.segs)-1].path
	size := j.segs[len(j.segs)-1].size
	j.segMu.RUnlock()
	if fi, err := os.Stat(active); err != nil || fi.Size() != 8<<10+mapSlack {
		t.Errorf("active segment: %v, %v; want preallocated to %d bytes", fi.Size(), err, 8<<10+mapSlack)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(active); err != nil || fi.Size() != size {
		t.Errorf("after Close the segment has %v bytes (%v), want %d", fi.Size(), err, size)
	}
	r, err := Verify(dir)
	if err != nil || len(r.Problems) > 0 || !r.Clean {
		t.Fatalf("Verify after Close: %v, problems %v, clean %v", err, r.Problems, r.Clean)
	}
	j2 := open(t, Options{Dir: dir, Fsync: FsyncNever})
	if diff := diffRecs(wantRecs(1, st.LastSeq), readAll(t, j2, 1)); diff != "" {
		t.Fatalf("after reopen (-want +got):\n%s", diff)
	}
}

// TestReaderStopsAtWrittenInMappedSegment: a Reader following a mapped
// segment reads only what was written, never the preallocated zeros after
// it (which would be stale in its buffer once records are copied there).
func TestReaderStopsAtWrittenInMappedSegment(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("segments are mapped on Linux only")
	}
	j := open(t, Options{Fsync: FsyncNever})
	if !j.mapped.Load() {
		t.Fatal("active segment not mapped")
	}
	r, err := j.Reader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for seq := uint64(1); seq <= 500; seq++ {
		if _, err := j.Write(1, encSeq); err != nil {
			t.Fatal(err)
		}
		got, p, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("Next at seq %d: %v", seq, err)
		}
		if got != seq || !bytes.Equal(p, payloadFor(seq)) {
			t.Fatalf("Next = seq %d (payload ok %v), want %d", got, bytes.Equal(p, payloadFor(seq)), seq)
		}
	}
}

// TestReaderReadsMappedSegmentThroughMapping: a Reader following the
// mapped active segment reads it through a read-only mapping of its own
// (a copy, no pread per batch of records), and keeps reading right when
// the writer seals the segment under it — unmaps it and cuts the file to
// its records — and rolls to the next one.
func TestReaderReadsMappedSegmentThroughMapping(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("segments are mapped on Linux only")
	}
	j := open(t, Options{Fsync: FsyncNever, SegmentSize: 16 << 10})
	r, err := j.Reader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	mappedReads, segments := 0, map[uint64]bool{}
	for seq := uint64(1); seq <= 2000; seq++ {
		if _, err := j.Write(1, encSeq); err != nil {
			t.Fatal(err)
		}
		// Read every other record as soon as it is written, the rest two
		// at a time: the reader is positioned in a segment both when its
		// writer seals it and after.
		if seq%2 == 1 {
			continue
		}
		for want := seq - 1; want <= seq; want++ {
			got, p, err := r.Next(ctx)
			if err != nil {
				t.Fatalf("Next at seq %d: %v", want, err)
			}
			if got != want || !bytes.Equal(p, payloadFor(want)) {
				t.Fatalf("Next = seq %d (payload ok %v), want %d", got, bytes.Equal(p, payloadFor(want)), want)
			}
			if r.rd.mapped() {
				mappedReads++
				segments[r.fbase] = true
			}
		}
	}
	if mappedReads < 1000 || len(segments) < 5 {
		t.Errorf("%d of 2000 records read through a mapping, in %d segments; want most, in many segments (16 KiB each)", mappedReads, len(segments))
	}
	// A reader from the start reads the sealed, cut segments with pread
	// (they were not preallocated when it opened them) and the active one
	// through its mapping.
	r2, err := j.Reader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	for want := uint64(1); want <= 2000; want++ {
		got, p, err := r2.Next(ctx)
		if err != nil || got != want || !bytes.Equal(p, payloadFor(want)) {
			t.Fatalf("second reader: Next = seq %d, %v, want %d", got, err, want)
		}
	}
	if !r2.rd.mapped() {
		t.Error("second reader: the active segment was not read through a mapping")
	}
}

// TestCopyMappedFault: a read of a mapped page that faults — here past the
// end of a file cut shorter than its mapping — is an error, not a crash.
func TestCopyMappedFault(t *testing.T) {
	f := mappableFile(t)
	if _, err := f.Write(bytes.Repeat([]byte{7}, 3*4096)); err != nil {
		t.Fatal(err)
	}
	p, err := newPreader(f)
	if err != nil {
		t.Fatal(err)
	}
	p.mapRead()
	defer p.close()
	if !p.mapped() {
		t.Fatal("file not mapped")
	}
	b := make([]byte, 100)
	if n, err := p.readAt(b, 4096+10); n != 100 || err != nil || b[0] != 7 {
		t.Fatalf("readAt = %d, %v (byte %d); want 100 bytes of 7", n, err, b[0])
	}
	if err := f.Truncate(4096); err != nil {
		t.Fatal(err)
	}
	n, err := p.readAt(b, 2*4096+10)
	if err == nil || !strings.Contains(err.Error(), "fault") {
		t.Fatalf("readAt past the cut end = %d, %v; want a fault error", n, err)
	}
	if n, err := p.readAt(b, 10); n != 100 || err != nil {
		t.Fatalf("readAt before the cut end after a fault = %d, %v", n, err)
	}
	if n, err := p.readAt(b, 3*4096); n != 0 || err != nil {
		t.Fatalf("readAt at the mapping's end = %d, %v; want 0, nil", n, err)
	}
}

// rawSegment is a segment file's bytes: records 1..n, then tail.
func rawSegment(n int, tail []byte) []byte {
	var b []byte
	for seq := uint64(1); seq <= uint64(n); seq++ {
		start := len(b)
		b = append(b, zeroHeader[:]...)
		b = appendPayload(b, seq)
		putHeader(b[start:], seq)
	}
	return append(b, tail...)
}

// TestRecoverCopyCutShort: a copy into a mapped segment cut short by a
// crash leaves the record zero from any byte on, followed by preallocated
// zeros: Open cuts it as torn. The same record without zeros after it (the
// file ends with it), or with data after the zeros, is damage, as before.
func TestRecoverCopyCutShort(t *testing.T) {
	partial := rawSegment(4, nil)[len(rawSegment(3, nil)):] // record 4
	clear(partial[21:])                                     // zero from byte 21: not a sector boundary
	for _, tc := range []struct {
		name    string
		tail    []byte
		corrupt bool
	}{
		{"zeros after", append(bytes.Clone(partial), make([]byte, 4096)...), false},
		{"file ends with it", bytes.Clone(partial), true},
		{"data after the zeros", append(append(bytes.Clone(partial), make([]byte, 100)...), 1), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(joinPath(dir, 1), rawSegment(3, tc.tail), 0o644); err != nil {
				t.Fatal(err)
			}
			log, logs := bufLogger()
			j, err := Open(Options{Dir: dir, Logger: log})
			if tc.corrupt {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Open = %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer j.Close()
			if got := j.LastSeq(); got != 3 {
				t.Errorf("LastSeq = %d, want 3", got)
			}
			if got := j.Stats().Truncated; got != int64(len(tc.tail)) {
				t.Errorf("Truncated = %d, want %d", got, len(tc.tail))
			}
			if !strings.Contains(logs.String(), "cut short by zeros") {
				t.Errorf("log does not give the reason:\n%s", logs)
			}
			if diff := diffRecs(wantRecs(1, 3), readAll(t, j, 1)); diff != "" {
				t.Errorf("records (-want +got):\n%s", diff)
			}
		})
	}
}

// TestToucherRunsAhead: with a mapped segment, the pages past the written
// end are written to (touched) ahead of the writer, on another goroutine,
// and the toucher stops when the segment is unmapped.
func TestToucherRunsAhead(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("segments are mapped on Linux only")
	}
	j := open(t, Options{Dir: t.TempDir(), Fsync: FsyncNever, SegmentSize: 8 << 20})
	tc := touchedAhead(t, j)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tc.done:
	default:
		t.Fatal("toucher still running after Close unmapped the segment")
	}
}

// TestToucherKeepsContent: touching pages while a writer copies records
// into them leaves every byte the writer wrote (a touch is an atomic add
// of zero, so it cannot undo a store that lands in the same word).
func TestToucherKeepsContent(t *testing.T) {
	f := mappableFile(t)
	const size = 4 << 20
	m, err := mapFile(f, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	defer unmapFile(m)
	tc := startToucher(m, 0)
	rec := make([]byte, 120)
	for i := range rec {
		rec[i] = byte(i + 1)
	}
	// The writer starts each page at its first word, where the toucher
	// adds: records of 120 bytes, 4096 = 34×120 + 16, drift over it.
	for off := 0; off+len(rec) <= size; off += len(rec) {
		if off%(64<<10) < len(rec) {
			tc.ask(int64(off) + 128<<10)
		}
		copyForward(m[off:], rec)
	}
	tc.close()
	for off := 0; off+len(rec) <= size; off += len(rec) {
		if !bytes.Equal(m[off:off+len(rec)], rec) {
			t.Fatalf("record at %d changed: %x", off, m[off:off+len(rec)])
		}
	}
}

// mappableFile skips the test outside Linux (segments are mapped there
// only) and returns a new empty file, closed at the end of the test.
func mappableFile(t *testing.T) *os.File {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("segments are mapped on Linux only")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "seg"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestMappedCopiesTouchedChunks: a chunk larger than mapCopyMax whose pages
// the toucher has touched is copied into the mapped segment (not written
// with pwrite), and every record of such chunks reads back, before and
// after a reopen.
func TestMappedCopiesTouchedChunks(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("segments are mapped on Linux only")
	}
	dir := t.TempDir()
	j := open(t, Options{Dir: dir, Fsync: FsyncNever, SegmentSize: 8 << 20})
	touchedAhead(t, j)
	for range 20 { // 100 records of 8–207 bytes: ~12 KiB a chunk
		if _, err := j.Write(100, encSeq); err != nil {
			t.Fatal(err)
		}
	}
	j.flushMu.Lock()
	copied := j.copiedTouched
	j.flushMu.Unlock()
	if copied == 0 {
		t.Error("no chunk larger than mapCopyMax was copied into the touched mapping")
	}
	last := j.Stats().LastSeq
	if diff := diffRecs(wantRecs(1, last), readAll(t, j, 1)); diff != "" {
		t.Fatalf("before reopen (-want +got):\n%s", diff)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if r, err := Verify(dir); err != nil || len(r.Problems) > 0 || !r.Clean {
		t.Fatalf("Verify after Close: %v, problems %v", err, r.Problems)
	}
	j2 := open(t, Options{Dir: dir, Fsync: FsyncNever})
	if diff := diffRecs(wantRecs(1, last), readAll(t, j2, 1)); diff != "" {
		t.Fatalf("after reopen (-want +got):\n%s", diff)
	}
}

// touchedAhead writes one record to j (a mapped journal with an empty
// segment) and waits until its toucher has touched the segment's first
// touchAhead bytes, which the mapping asks of it; it returns the toucher.
func touchedAhead(t *testing.T, j *Journal) *toucher {
	t.Helper()
	if _, err := j.Write(1, encSeq); err != nil {
		t.Fatal(err)
	}
	j.flushMu.Lock()
	tc := j.touch
	j.flushMu.Unlock()
	if tc == nil {
		t.Fatal("no toucher for a mapped segment")
	}
	deadline := time.Now().Add(10 * time.Second)
	for tc.at.Load() < touchAhead {
		if time.Now().After(deadline) {
			t.Fatalf("pages touched up to %d, want %d ahead of a one-record segment", tc.at.Load(), touchAhead)
		}
		time.Sleep(time.Millisecond)
	}
	return tc
}
