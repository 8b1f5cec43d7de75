package journal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen feeds arbitrary bytes as a segment file to recovery (as the last
// segment, where torn tails are cut, and as an earlier one, where they are
// corruption) and reads back whatever Open accepted. It must never panic,
// and every error must be a CorruptError or an I/O error.
func FuzzOpen(f *testing.F) {
	rec := func(seq uint64, payload string) []byte {
		b := append(make([]byte, headerSize), payload...)
		putHeader(b, seq)
		return b
	}
	valid := bytes.Join([][]byte{rec(1, "a"), rec(2, ""), rec(3, "hello world")}, nil)
	f.Add(valid)
	f.Add(valid[:len(valid)-4])
	f.Add(append(bytes.Clone(valid), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
	f.Add([]byte{})
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// As a non-final segment: strict.
		res, err := scanSegment(bytes.NewReader(data), int64(len(data)), "fuzz.seg", 1, false)
		if err == nil && res.size != int64(len(data)) {
			t.Fatalf("non-final scan accepted %d of %d bytes without error", res.size, len(data))
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("non-final scan: %v, want a CorruptError", err)
		}

		// As the only (final) segment, through Open and a Reader.
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		j, err := Open(Options{Dir: dir, Fsync: FsyncNever, Logger: discardLogger()})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want a CorruptError", err)
			}
			return
		}
		defer j.Close()
		r, err := j.Reader(1)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		n := uint64(0)
		for {
			seq, _, ok, err := r.TryNext()
			if err != nil {
				t.Fatalf("TryNext after Open accepted the file: %v", err)
			}
			if !ok {
				break
			}
			n++
			if seq != n {
				t.Fatalf("TryNext = seq %d, want %d", seq, n)
			}
		}
		if n != j.LastSeq() {
			t.Fatalf("read %d records, LastSeq %d", n, j.LastSeq())
		}
		if _, err := j.Append(t.Context(), []byte("after")); err != nil {
			t.Fatalf("Append after recovery: %v", err)
		}
	})
}

// FuzzCleanMarker feeds arbitrary bytes as the clean-shutdown marker of a
// journal holding three records. decodeClean must never panic and accept
// only what encode produces; Open must either accept a marker that
// describes the journal exactly or refuse with a CorruptError.
func FuzzCleanMarker(f *testing.F) {
	rec := func(seq uint64, payload string) []byte {
		b := append(make([]byte, headerSize), payload...)
		putHeader(b, seq)
		return b
	}
	seg := bytes.Join([][]byte{rec(1, "a"), rec(2, ""), rec(3, "hello world")}, nil)
	good := cleanMarker{base: 1, size: int64(len(seg)), last: 3}
	f.Add(good.encode())
	f.Add(cleanMarker{base: 1, size: int64(len(seg)) - 1, last: 3}.encode())
	f.Add(cleanMarker{base: 1, size: 0, last: 0}.encode())
	f.Add(cleanMarker{base: 2, size: 5, last: 1}.encode())
	f.Add([]byte(cleanMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeClean(data)
		if err == nil && !bytes.Equal(m.encode(), data) {
			t.Fatalf("decodeClean accepted %x, which encodes back to %x", data, m.encode())
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, segName(1)), seg, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, cleanName), data, 0o644); err != nil {
			t.Fatal(err)
		}
		j, err := Open(Options{Dir: dir, Fsync: FsyncNever, Logger: discardLogger()})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want a CorruptError", err)
			}
			return
		}
		defer j.Close()
		if m != good {
			t.Fatalf("Open accepted marker %+v for a journal that ends at %+v", m, good)
		}
		if _, err := os.Stat(filepath.Join(dir, cleanName)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("marker left after Open: %v", err)
		}
	})
}
