package journal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerify: a clean journal verifies without problems and reports every
// segment; a flipped bit in one record is reported with its file and
// offset, and the segments after it are still checked.
func TestVerify(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(Options{Dir: dir, SegmentSize: 4096, Fsync: FsyncNever, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for seq := uint64(1); seq <= n; seq++ {
		if _, err := j.Append(context.Background(), payloadFor(seq)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) != 0 || !r.Clean {
		t.Fatalf("Verify(clean journal): clean %v, problems %v", r.Clean, r.Problems)
	}
	if len(r.Segments) < 3 {
		t.Fatalf("%d segments, want several (4 KiB segments)", len(r.Segments))
	}
	var total uint64
	for i, s := range r.Segments {
		total += s.Records
		if !bytes.Equal(s.FirstPayload, payloadFor(s.First)) || !bytes.Equal(s.LastPayload, payloadFor(s.Last)) {
			t.Errorf("segment %d: first/last payloads are not those of seqs %d and %d", i, s.First, s.Last)
		}
	}
	if total != n || r.Segments[len(r.Segments)-1].Last != n {
		t.Errorf("records %d, last seq %d; want %d", total, r.Segments[len(r.Segments)-1].Last, n)
	}

	// Flip a bit inside a record of the second segment.
	bad := r.Segments[1]
	b, err := os.ReadFile(bad.File)
	if err != nil {
		t.Fatal(err)
	}
	b[headerSize+3] ^= 0x10
	if err := os.WriteFile(bad.File, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err = Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) != 1 {
		t.Fatalf("problems %v, want exactly one", r.Problems)
	}
	var ce *CorruptError
	if !errors.As(r.Problems[0], &ce) || ce.File != bad.File || ce.Offset != 0 {
		t.Errorf("problem %v, want a CorruptError at %s offset 0", r.Problems[0], bad.File)
	}
	if got := len(r.Segments); got < 3 || r.Segments[2].Problem != nil || r.Segments[2].Records == 0 {
		t.Errorf("the segments after the damage were not checked: %+v", r.Segments[2:])
	}
	if _, err := os.Stat(dir + "/" + cleanName); err != nil {
		t.Errorf("Verify changed the directory: %v", err)
	}
}

// TestVerifyManifest: a manifest entry Open would trust (marked fsynced)
// that does not match its segment is a problem; a damaged manifest is not
// (Open does not use it).
func TestVerifyManifest(t *testing.T) {
	dir := writeSegments(t, 2048, 300)
	path := filepath.Join(dir, manifestName)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	entries, _, why := decodeManifest(good)
	if why != nil || len(entries) < 3 {
		t.Fatalf("manifest: %d entries, %v", len(entries), why)
	}
	if r, err := Verify(dir); err != nil || len(r.Problems) != 0 {
		t.Fatalf("Verify(journal with manifest) = %v, %v; want no problem", r.Problems, err)
	}
	lying := entries[1]
	lying.last++ // one record more than the segment has
	out := manifestHeader(nil)
	for _, e := range append(entries, lying) {
		out = e.appendTo(out)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ce *CorruptError
	if len(r.Problems) != 1 || !errors.As(r.Problems[0], &ce) || ce.File != joinPath(dir, lying.base) ||
		!strings.Contains(ce.Reason, "manifest") {
		t.Fatalf("problems %v, want one naming %s and the manifest", r.Problems, joinPath(dir, lying.base))
	}
	if err := os.WriteFile(path, good[:len(good)/2], 0o644); err != nil { // torn
		t.Fatal(err)
	}
	if r, err := Verify(dir); err != nil || len(r.Problems) != 0 {
		t.Errorf("Verify(journal with a torn manifest) = %v, %v; want no problem", r.Problems, err)
	}
}
