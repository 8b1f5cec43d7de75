package journal

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestRetentionBytes(t *testing.T) {
	j := open(t, Options{SegmentSize: 1024, RetentionBytes: 4096, retentionEvery: 5 * time.Millisecond})
	appendSeqs(t, j, 400, 10)
	// Retention runs after rolls and periodically; wait for it to settle
	// (segments leave the index before their files are unlinked).
	deadline := time.Now().Add(5 * time.Second)
	for (j.Stats().Bytes > 4096 || len(segFiles(t, j.opts.Dir)) != j.Stats().Segments) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := j.Stats()
	if st.Bytes > 4096 {
		t.Fatalf("Bytes = %d, want <= RetentionBytes 4096", st.Bytes)
	}
	if st.Bytes < 4096-2*1024 {
		t.Errorf("Bytes = %d, retention deleted too much (want > %d)", st.Bytes, 4096-2*1024)
	}
	if st.FirstSeq <= 1 || st.SegmentsDeleted == 0 {
		t.Errorf("FirstSeq = %d, SegmentsDeleted = %d; want > 1 and > 0", st.FirstSeq, st.SegmentsDeleted)
	}
	if files := segFiles(t, j.opts.Dir); len(files) != st.Segments {
		t.Errorf("%d files on disk, want %d segments", len(files), st.Segments)
	}
	if diff := diffRecs(wantRecs(st.FirstSeq, 400), readAll(t, j, st.FirstSeq)); diff != "" {
		t.Errorf("read retained (-want +got):\n%s", diff)
	}
	_, err := j.Reader(1)
	var te *TruncatedError
	if !errors.As(err, &te) || !errors.Is(err, ErrTruncated) || te.First != st.FirstSeq || te.Requested != 1 {
		t.Errorf("Reader(1) = %v, want TruncatedError{1, %d}", err, st.FirstSeq)
	}
}

func TestRetentionAge(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	j := open(t, Options{SegmentSize: 1024, RetentionAge: time.Hour, now: clock})
	appendSeqs(t, j, 100, 10) // old records
	advance(50 * time.Minute)
	appendSeqs(t, j, 100, 10) // newer records
	oldLast := uint64(100)
	j.enforceRetention()
	if got := j.FirstSeq(); got != 1 {
		t.Fatalf("FirstSeq after retention with nothing expired = %d, want 1", got)
	}
	advance(20 * time.Minute) // first 100 records are now 70 min old, the rest 20 min
	j.enforceRetention()
	first := j.FirstSeq()
	if first <= 1 || first > oldLast+1 {
		t.Fatalf("FirstSeq after age retention = %d, want in (1, %d]", first, oldLast+1)
	}
	// The segment holding seq 100 may also hold newer records, so it is kept;
	// nothing written in the last hour was deleted.
	if diff := diffRecs(wantRecs(first, 200), readAll(t, j, first)); diff != "" {
		t.Errorf("read retained (-want +got):\n%s", diff)
	}
	advance(2 * time.Hour) // everything old: all but the active segment go
	j.enforceRetention()
	st := j.Stats()
	if st.Segments != 1 {
		t.Errorf("Segments after everything expired = %d, want 1 (the active one)", st.Segments)
	}
	if diff := diffRecs(wantRecs(st.FirstSeq, 200), readAll(t, j, st.FirstSeq)); diff != "" {
		t.Errorf("read retained (-want +got):\n%s", diff)
	}
}

func TestReaderSurvivesRetention(t *testing.T) {
	j := open(t, Options{SegmentSize: 1024})
	appendSeqs(t, j, 20, 20)
	r, err := j.Reader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The reader opens segment 1.
	seq, _, ok, err := r.TryNext()
	if err != nil || !ok || seq != 1 {
		t.Fatalf("TryNext = %d, %v, %v, want 1", seq, ok, err)
	}
	appendSeqs(t, j, 200, 20)
	j.opts.RetentionBytes = 1 // keep only the active segment (no retention goroutine runs)
	j.enforceRetention()
	first := j.FirstSeq()
	if first <= 20 {
		t.Fatalf("FirstSeq = %d, want retention to have deleted segment 1", first)
	}
	// It keeps reading its open (deleted) segment to its end...
	var last uint64 = 1
	for {
		seq, p, ok, err := r.TryNext()
		if errors.Is(err, ErrTruncated) {
			var te *TruncatedError
			if !errors.As(err, &te) || te.First != first || te.Requested != last+1 {
				t.Fatalf("TryNext = %v, want TruncatedError{%d, %d}", err, last+1, first)
			}
			break
		}
		if err != nil || !ok {
			t.Fatalf("TryNext after seq %d = ok %v, err %v", last, ok, err)
		}
		if seq != last+1 || !bytes.Equal(p, payloadFor(seq)) {
			t.Fatalf("TryNext = %d, want %d", seq, last+1)
		}
		last = seq
	}
	if last < 2 {
		t.Errorf("reader read up to %d from its deleted segment, want more", last)
	}
	// ...then, after ErrTruncated, continues from FirstSeq.
	var got []rec
	for {
		seq, p, ok, err := r.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, rec{seq, bytes.Clone(p)})
	}
	if diff := diffRecs(wantRecs(first, 220), got); diff != "" {
		t.Errorf("records after truncation (-want +got):\n%s", diff)
	}
}
