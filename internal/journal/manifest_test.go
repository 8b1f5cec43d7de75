package journal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// manifestBases returns the bases the manifest in dir lists, in file order,
// and whether all of it checked out.
func manifestBases(t *testing.T, dir string) ([]uint64, bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		t.Fatalf("read manifest: %v", err)
	}
	entries, valid, why := decodeManifest(b)
	if why != nil {
		t.Fatalf("manifest: %v", why)
	}
	var bases []uint64
	for _, e := range entries {
		bases = append(bases, e.base)
	}
	return bases, valid == len(b)
}

// sealedBases returns the bases of the segment files in dir but the last.
func sealedBases(t *testing.T, dir string) []uint64 {
	t.Helper()
	bases, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	return bases[:len(bases)-1]
}

// openCounts opens dir, checks that it reads back records 1..want (written
// by writeSegments), and returns how many sealed segments Open took from
// the manifest and how many it scanned.
func openCounts(t *testing.T, dir string, want uint64) (fromManifest, scanned int) {
	t.Helper()
	j, err := Open(Options{Dir: dir, Logger: discardLogger()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer j.Close()
	if diff := diffRecs(wantRecs(1, want), readAll(t, j, 1)); diff != "" {
		t.Fatalf("records (-want +got):\n%s", diff)
	}
	return j.manifestAtOpen, j.scannedAtOpen
}

// TestManifestOpen: a journal closed cleanly, or crashed, opens from its
// manifest (every sealed segment, scanning only the last) without writing
// the manifest again; its entries list exactly the sealed segments.
func TestManifestOpen(t *testing.T) {
	const n = 300
	dir := writeSegments(t, 2048, n)
	sealed := sealedBases(t, dir)
	if len(sealed) < 10 {
		t.Fatalf("%d sealed segments, want >= 10", len(sealed))
	}
	got, whole := manifestBases(t, dir)
	if diff := cmp.Diff(sealed, got); diff != "" || !whole {
		t.Fatalf("manifest lists (-sealed +manifest):\n%s (whole %v)", diff, whole)
	}
	path := filepath.Join(dir, manifestName)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, crash := range []bool{false, true} {
		if crash {
			simulateCrash(t, dir)
		}
		fromManifest, scanned := openCounts(t, dir, n)
		if fromManifest != len(sealed) || scanned != 1 {
			t.Errorf("crash %v: Open took %d segments from the manifest and scanned %d, want %d and 1",
				crash, fromManifest, scanned, len(sealed))
		}
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) || after.Size() != before.Size() {
		t.Errorf("manifest was written again by an Open that had nothing to change")
	}
}

// TestManifestMissing: without a manifest, Open reads the index files
// and writes the manifest, which the next Open uses.
func TestManifestMissing(t *testing.T) {
	const n = 300
	dir := writeSegments(t, 2048, n)
	sealed := sealedBases(t, dir)
	removeManifest(t, dir)
	if fromManifest, scanned := openCounts(t, dir, n); fromManifest != 0 || scanned != 1 {
		t.Errorf("without a manifest: %d from the manifest, %d scanned, want 0 and 1", fromManifest, scanned)
	}
	if got, _ := manifestBases(t, dir); !cmp.Equal(got, sealed) {
		t.Errorf("manifest written by Open lists %v, want %v", got, sealed)
	}
	if fromManifest, _ := openCounts(t, dir, n); fromManifest != len(sealed) {
		t.Errorf("next Open took %d segments from the manifest, want %d", fromManifest, len(sealed))
	}
}

// TestManifestDamaged: a manifest cut at any length (a torn append, or a
// torn rewrite), with zeroed sectors, or with any byte flipped is used up
// to its first entry that does not check out; the other sealed segments
// take the per-segment path, the journal reads back whole, and Open writes
// the manifest again, whole.
func TestManifestDamaged(t *testing.T) {
	const n = 300
	dir := writeSegments(t, 2048, n)
	sealed := sealedBases(t, dir)
	path := filepath.Join(dir, manifestName)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := manifestHeaderSize + len(sealed)*manifestEntrySize; len(good) != want {
		t.Fatalf("manifest has %d bytes, want %d", len(good), want)
	}
	// entriesBefore is how many entries are whole before byte i.
	entriesBefore := func(i int) int { return max(0, (i-manifestHeaderSize)/manifestEntrySize) }
	check := func(t *testing.T, damaged []byte, wantFromManifest int) {
		t.Helper()
		if err := os.WriteFile(path, damaged, 0o644); err != nil {
			t.Fatal(err)
		}
		fromManifest, scanned := openCounts(t, dir, n)
		if fromManifest != wantFromManifest || scanned != 1 {
			t.Errorf("Open took %d segments from the manifest, scanned %d; want %d and 1", fromManifest, scanned, wantFromManifest)
		}
		if got, whole := manifestBases(t, dir); !cmp.Equal(got, sealed) || !whole {
			t.Errorf("manifest after Open lists %v (whole %v), want %v", got, whole, sealed)
		}
	}
	t.Run("cut", func(t *testing.T) {
		for cut := 0; cut < len(good); cut += 7 {
			check(t, good[:cut], map[bool]int{true: entriesBefore(cut), false: 0}[cut >= manifestHeaderSize])
		}
	})
	t.Run("zeroed sectors", func(t *testing.T) {
		for from := 0; from < len(good); from += sectorSize {
			b := bytes.Clone(good)
			clear(b[from:])
			want := entriesBefore(from)
			if from < manifestHeaderSize {
				want = 0
			}
			check(t, b, want)
		}
	})
	t.Run("flipped byte", func(t *testing.T) {
		for i := 0; i < len(good); i += 5 {
			b := bytes.Clone(good)
			b[i] ^= 0x08
			want := entriesBefore(i)
			if i < manifestHeaderSize {
				want = 0
			}
			check(t, b, want)
		}
	})
	t.Run("garbage appended", func(t *testing.T) {
		check(t, append(bytes.Clone(good), "not an entry"...), len(sealed))
	})
}

// TestManifestSealedBeforeCrash: a crash between sealing a segment and
// appending its manifest entry (the entry is missing, or torn) leaves a
// sealed segment the manifest does not list: Open describes it from its
// index file (or a scan without one) and lists it again.
func TestManifestSealedBeforeCrash(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cut      int  // bytes cut from the manifest's end
		dropIdxs bool // the index file was not written either
	}{
		{"entry missing", manifestEntrySize, false},
		{"entry torn", manifestEntrySize / 2, false},
		{"entry and index file missing", manifestEntrySize, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 300
			dir := writeSegments(t, 2048, n)
			sealed := sealedBases(t, dir)
			simulateCrash(t, dir)
			path := filepath.Join(dir, manifestName)
			modifyFile(t, path, func(b []byte) []byte { return b[:len(b)-tc.cut] })
			wantScanned := 1
			if tc.dropIdxs {
				if err := os.Remove(indexPath(joinPath(dir, sealed[len(sealed)-1]))); err != nil {
					t.Fatal(err)
				}
				wantScanned = 2
			}
			fromManifest, scanned := openCounts(t, dir, n)
			if fromManifest != len(sealed)-1 || scanned != wantScanned {
				t.Errorf("Open took %d segments from the manifest, scanned %d; want %d and %d",
					fromManifest, scanned, len(sealed)-1, wantScanned)
			}
			if got, whole := manifestBases(t, dir); !cmp.Equal(got, sealed) || !whole {
				t.Errorf("manifest after Open lists %v (whole %v), want %v", got, whole, sealed)
			}
			if fromManifest, _ := openCounts(t, dir, n); fromManifest != len(sealed) {
				t.Errorf("next Open took %d segments from the manifest, want %d", fromManifest, len(sealed))
			}
		})
	}
}

// TestManifestStale: a manifest older or newer than the segment files
// (segments added or removed behind the journal's back, or an operator's
// cut) is used only for the segments it describes, and Open writes it
// again so that a stale entry never describes a later segment that
// reuses its base.
func TestManifestStale(t *testing.T) {
	t.Run("segments added", func(t *testing.T) {
		dir := writeSegments(t, 2048, 100)
		old, err := os.ReadFile(filepath.Join(dir, manifestName))
		if err != nil {
			t.Fatal(err)
		}
		oldSealed := len(sealedBases(t, dir))
		j := open(t, Options{Dir: dir, SegmentSize: 2048})
		appendSeqs(t, j, 200, 10) // records 101..300: more segments
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, manifestName), old, 0o644); err != nil {
			t.Fatal(err)
		}
		sealed := sealedBases(t, dir)
		fromManifest, _ := openCounts(t, dir, 300)
		if fromManifest != oldSealed {
			t.Errorf("Open took %d segments from the old manifest, want %d", fromManifest, oldSealed)
		}
		if got, _ := manifestBases(t, dir); !cmp.Equal(got, sealed) {
			t.Errorf("manifest after Open lists %v, want %v", got, sealed)
		}
	})
	t.Run("first segments removed", func(t *testing.T) {
		// As retention does, offline: the entries left below the first
		// segment are harmless and kept.
		dir := writeSegments(t, 2048, 300)
		sealed := sealedBases(t, dir)
		for _, base := range sealed[:3] {
			for _, p := range []string{joinPath(dir, base), indexPath(joinPath(dir, base))} {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			}
		}
		j, err := Open(Options{Dir: dir, Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if j.manifestAtOpen != len(sealed)-3 || j.FirstSeq() != sealed[3] {
			t.Errorf("Open took %d segments from the manifest, first seq %d; want %d, %d",
				j.manifestAtOpen, j.FirstSeq(), len(sealed)-3, sealed[3])
		}
		if diff := diffRecs(wantRecs(sealed[3], 300), readAll(t, j, sealed[3])); diff != "" {
			t.Errorf("records (-want +got):\n%s", diff)
		}
		j.Close()
	})
	t.Run("operator cut", func(t *testing.T) {
		// The documented recovery from damage: cut a segment, delete the
		// later ones (with their index files) and reopen. The segments
		// written next reuse the deleted ones' bases with other contents.
		dir := writeSegments(t, 2048, 300)
		bases, err := listSegments(dir)
		if err != nil {
			t.Fatal(err)
		}
		k := len(bases) - 3 // cut inside this one, delete the rest
		for _, base := range bases[k+1:] {
			os.Remove(indexPath(joinPath(dir, base)))
			if err := os.Remove(joinPath(dir, base)); err != nil {
				t.Fatal(err)
			}
		}
		simulateCrash(t, dir)
		cutPath := joinPath(dir, bases[k])
		offs := recordOffsets(t, cutPath)
		if err := os.Truncate(cutPath, offs[len(offs)/2]); err != nil {
			t.Fatal(err)
		}
		last := bases[k] + uint64(len(offs)/2) - 1
		j := open(t, Options{Dir: dir, SegmentSize: 2048})
		if got := j.LastSeq(); got != last {
			t.Fatalf("LastSeq after the cut = %d, want %d", got, last)
		}
		if got, _ := manifestBases(t, dir); !cmp.Equal(got, bases[:k]) {
			t.Fatalf("manifest after the cut lists %v, want %v (no entry for the cut or deleted segments)", got, bases[:k])
		}
		// Larger records than before: the next segments start elsewhere.
		for range 30 {
			if _, err := j.Append(context.Background(), bytes.Repeat([]byte{'x'}, 300)); err != nil {
				t.Fatal(err)
			}
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		simulateCrash(t, dir)
		j2, err := Open(Options{Dir: dir, Logger: discardLogger()})
		if err != nil {
			t.Fatalf("Open after the cut and new writes: %v", err)
		}
		defer j2.Close()
		got := readAll(t, j2, 1)
		if len(got) != int(last)+30 {
			t.Fatalf("read %d records, want %d", len(got), last+30)
		}
		if diff := diffRecs(wantRecs(1, last), got[:last]); diff != "" {
			t.Errorf("records before the cut (-want +got):\n%s", diff)
		}
		for _, r := range got[last:] {
			if !bytes.Equal(r.Payload, bytes.Repeat([]byte{'x'}, 300)) {
				t.Fatalf("record %d after the cut has payload %q", r.Seq, r.Payload)
			}
		}
		if sealed := sealedBases(t, dir); j2.manifestAtOpen != len(sealed) {
			t.Errorf("Open took %d segments from the manifest, want all %d", j2.manifestAtOpen, len(sealed))
		}
	})
	t.Run("unsynced entry for another size", func(t *testing.T) {
		// With fsync=never an entry is used only if the segment has its
		// size.
		dir := writeKiB(t, 200<<10, 1000)
		path := filepath.Join(dir, manifestName)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		entries, _, why := decodeManifest(b)
		if why != nil || len(entries) < 3 {
			t.Fatalf("manifest: %d entries, %v", len(entries), why)
		}
		for _, e := range entries {
			if e.synced {
				t.Fatalf("entry for %d written with fsync=never is marked synced", e.base)
			}
		}
		entries[1].size -= 1040 // one record less than the segment has
		entries[1].last--
		entries[1].lastOff -= 1040
		out := manifestHeader(nil)
		for _, e := range entries {
			out = e.appendTo(out)
		}
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
		simulateCrash(t, dir)
		j, err := Open(Options{Dir: dir, Fsync: FsyncNever, Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		if j.manifestAtOpen != len(entries)-1 {
			t.Errorf("Open took %d segments from the manifest, want %d (all but the stale one)", j.manifestAtOpen, len(entries)-1)
		}
		if got := len(readAll(t, j, 1)); got != 1000 {
			t.Errorf("read %d records, want 1000", got)
		}
	})
}

// TestManifestFollowsRetention: segments deleted by retention leave their
// entries behind; Open ignores them, and writes the manifest again once
// they outnumber the live ones (and at least 64).
func TestManifestFollowsRetention(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir, SegmentSize: 1024, RetentionBytes: 4096})
	appendSeqs(t, j, 2000, 10) // ~200 segments, 4-5 retained
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	sealed := sealedBases(t, dir)
	listed, _ := manifestBases(t, dir)
	if len(listed) < 100 {
		t.Fatalf("manifest lists %d segments, want the deleted ones too (>= 100)", len(listed))
	}
	j2, err := Open(Options{Dir: dir, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if j2.manifestAtOpen != len(sealed) {
		t.Errorf("Open took %d segments from the manifest, want %d", j2.manifestAtOpen, len(sealed))
	}
	first := j2.FirstSeq()
	if diff := diffRecs(wantRecs(first, 2000), readAll(t, j2, first)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	j2.Close()
	if got, _ := manifestBases(t, dir); !cmp.Equal(got, sealed) {
		t.Errorf("manifest after Open lists %d segments, want the %d retained", len(got), len(sealed))
	}
}

// TestLazyIndex: the index of a sealed segment taken from the manifest is
// loaded once, by the first Reader that needs it (many at once here), and
// positions Readers like an index built by a scan.
func TestLazyIndex(t *testing.T) {
	dir := t.TempDir()
	j := open(t, Options{Dir: dir, SegmentSize: 1 << 20})
	const n = 30000
	appendSeqs(t, j, n, 500)
	want := segStates(t, j)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2 := open(t, Options{Dir: dir})
	j2.segMu.RLock()
	lazy := j2.segs[0].lazy
	j2.segMu.RUnlock()
	if lazy == nil || j2.manifestAtOpen < 2 {
		t.Fatalf("first segment not taken from the manifest (%d were)", j2.manifestAtOpen)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			from := uint64(1 + g*3001)
			r, err := j2.Reader(from)
			if err != nil {
				t.Error(err)
				return
			}
			defer r.Close()
			seq, p, ok, err := r.TryNext()
			if err != nil || !ok || seq != from || !bytes.Equal(p, payloadFor(from)) {
				t.Errorf("Reader(%d).TryNext() = %d, %v, %v", from, seq, ok, err)
			}
		})
	}
	wg.Wait()
	lazy.mu.Lock()
	loaded := lazy.loaded
	lazy.mu.Unlock()
	if !loaded {
		t.Fatalf("reading the first segment did not load its index")
	}
	if diff := cmp.Diff(want, segStates(t, j2), cmpSegs); diff != "" {
		t.Errorf("segments after reopening (-before +after):\n%s", diff)
	}
	for _, from := range []uint64{777, 5000, 9999} {
		r, err := j2.Reader(from)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, ok, err := r.TryNext(); !ok || err != nil {
			t.Fatalf("Reader(%d).TryNext: %v, %v", from, ok, err)
		}
		e := locateIn(want[0].Index, 1, from)
		if from < want[1].Base && r.bufOff != e.off {
			t.Errorf("Reader(%d) read from offset %d, want index offset %d", from, r.bufOff, e.off)
		}
		r.Close()
	}
}

// TestLazyIndexSegmentDamaged: when a sealed segment taken from the
// manifest does not hold what its entry says (here: its index file is gone
// and it was cut short), the Reader that loads its index reports a
// *CorruptError naming it.
func TestLazyIndexSegmentDamaged(t *testing.T) {
	dir := writeSegments(t, 2048, 300)
	sealed := sealedBases(t, dir)
	victim := joinPath(dir, sealed[2])
	if err := os.Remove(indexPath(victim)); err != nil {
		t.Fatal(err)
	}
	offs := recordOffsets(t, victim)
	if err := os.Truncate(victim, offs[len(offs)-1]); err != nil { // a whole record less
		t.Fatal(err)
	}
	j := open(t, Options{Dir: dir})
	r, err := j.Reader(sealed[2])
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err = r.Next(ctx)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != victim || ce.Offset != offs[len(offs)-1] {
		t.Fatalf("Next = %v, want a CorruptError for %s at %d", err, victim, offs[len(offs)-1])
	}
}

// FuzzDecodeManifest feeds arbitrary bytes (untrusted: read from disk) to
// the manifest decoder. It must never panic; what it accepts must be
// canonical (the header and the entries it returns encode back to the bytes
// they came from) and consistent.
func FuzzDecodeManifest(f *testing.F) {
	e1 := manifestEntry{base: 1, last: 40, size: 4000, lastOff: 3900, modTime: 1e18, nIndex: 0, indexCRC: 0, synced: true}
	e2 := manifestEntry{base: 41, last: 41, size: 20, lastOff: 0, modTime: 1e18 + 5, nIndex: 0, synced: false}
	e3 := manifestEntry{base: 42, last: 2000, size: 200000, lastOff: 199000, nIndex: 3, indexCRC: 0xdeadbeef, synced: true}
	whole := e3.appendTo(e2.appendTo(e1.appendTo(manifestHeader(nil))))
	f.Add(whole)
	f.Add(manifestHeader(nil))
	f.Add(whole[:len(whole)-3])
	f.Add(append(bytes.Clone(whole), make([]byte, 100)...))
	f.Add([]byte(manifestMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, valid, why := decodeManifest(b)
		if why != nil {
			if len(entries) != 0 || valid != 0 {
				t.Fatalf("rejected manifest returned %d entries, %d valid bytes", len(entries), valid)
			}
			return
		}
		if valid > len(b) || (len(b)-valid >= manifestEntrySize && len(b) > valid && func() bool {
			_, err := decodeManifestEntry(b[valid : valid+manifestEntrySize])
			return err == nil
		}()) {
			t.Fatalf("decoding stopped at %d of %d bytes before an entry that checks out", valid, len(b))
		}
		out := manifestHeader(nil)
		for _, e := range entries {
			if e.base == 0 || e.last+1 < e.base || (e.size == 0) != (e.last+1 == e.base) || e.size < 0 || e.lastOff < 0 {
				t.Fatalf("accepted inconsistent entry %+v", e)
			}
			out = e.appendTo(out)
		}
		if !bytes.Equal(out, b[:valid]) {
			t.Fatalf("decode then encode changed the bytes:\n%x\n%x", b[:valid], out)
		}
	})
}
