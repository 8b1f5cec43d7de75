package journal

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

// mapAllEnv, set to 1, runs this package's tests with every active segment
// memory-mapped, whatever the fsync policy (TestSuiteMapped sets it).
const mapAllEnv = "SEMPROP_JOURNAL_MAP_ALL"

func TestMain(m *testing.M) {
	mapEveryPolicy = os.Getenv(mapAllEnv) == "1"
	goleak.VerifyTestMain(m)
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func bufLogger() (*slog.Logger, *syncBuffer) {
	var b syncBuffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}

// open opens a journal in opts.Dir (a fresh temp dir if empty) and closes it
// at cleanup.
func open(t testing.TB, opts Options) *Journal {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	j, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// payloadFor is the deterministic payload of seq: its size and bytes depend
// only on seq, so readers can check every byte.
func payloadFor(seq uint64) []byte {
	return appendPayload(nil, seq)
}

func appendPayload(dst []byte, seq uint64) []byte {
	n := 8 + int(seq*7919%200)
	for i := range n {
		dst = append(dst, byte(seq>>(8*(i%8)))^byte(i*31))
	}
	return dst
}

// encSeq is a Write encoder that writes payloadFor(seq).
func encSeq(_ int, seq uint64, dst []byte) ([]byte, error) { return appendPayload(dst, seq), nil }

type rec struct {
	Seq     uint64
	Payload []byte
}

// readAll reads every durable record from from on with TryNext.
func readAll(t testing.TB, j *Journal, from uint64) []rec {
	t.Helper()
	r, err := j.Reader(from)
	if err != nil {
		t.Fatalf("Reader(%d): %v", from, err)
	}
	defer r.Close()
	var out []rec
	for {
		seq, p, ok, err := r.TryNext()
		if err != nil {
			t.Fatalf("TryNext after %d records: %v", len(out), err)
		}
		if !ok {
			return out
		}
		out = append(out, rec{seq, bytes.Clone(p)})
	}
}

// wantRecs is what readAll returns for records first..last written with payloadFor.
func wantRecs(first, last uint64) []rec {
	var out []rec
	for s := first; s <= last; s++ {
		out = append(out, rec{s, payloadFor(s)})
	}
	return out
}

// diffRecs is cmp.Diff for record lists, with a fast path for equal ones
// (cmp is slow on tens of thousands of records under -race).
func diffRecs(want, got []rec) string {
	if len(want) == len(got) {
		equal := true
		for i := range want {
			if want[i].Seq != got[i].Seq || !bytes.Equal(want[i].Payload, got[i].Payload) {
				equal = false
				break
			}
		}
		if equal {
			return ""
		}
	}
	return cmp.Diff(want, got)
}

func appendSeqs(t testing.TB, j *Journal, n, batch int) {
	t.Helper()
	for n > 0 {
		k := min(n, batch)
		first, err := j.Write(k, encSeq)
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
		if err := j.WaitDurable(context.Background(), first+uint64(k)-1); err != nil {
			t.Fatalf("WaitDurable: %v", err)
		}
		n -= k
	}
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseFsyncPolicy(t *testing.T) {
	for _, p := range []FsyncPolicy{FsyncAlways, FsyncInterval, FsyncNever} {
		got, err := ParseFsyncPolicy(p.String())
		if err != nil || got != p {
			t.Errorf("ParseFsyncPolicy(%q) = %v, %v, want %v", p.String(), got, err, p)
		}
	}
	if _, err := ParseFsyncPolicy("sometimes"); err == nil {
		t.Errorf("ParseFsyncPolicy(%q) = nil error, want error", "sometimes")
	}
}

func TestAppendReadBack(t *testing.T) {
	tests := []struct {
		name        string
		segmentSize int64
		n, batch    int
		wantSegs    int // minimum
	}{
		{"one record", 0, 1, 1, 1},
		{"one segment", 0, 500, 7, 1},
		{"tiny segments: one record each", 1, 20, 3, 20},
		{"small segments", 1024, 600, 16, 50},
		{"big batches across rolls", 4096, 3000, 256, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := open(t, Options{SegmentSize: tt.segmentSize})
			appendSeqs(t, j, tt.n, tt.batch)
			got := readAll(t, j, 1)
			if diff := diffRecs(wantRecs(1, uint64(tt.n)), got); diff != "" {
				t.Fatalf("read back (-want +got):\n%s", diff)
			}
			st := j.Stats()
			if st.Segments < tt.wantSegs {
				t.Errorf("Segments = %d, want >= %d", st.Segments, tt.wantSegs)
			}
			if st.LastSeq != uint64(tt.n) || st.DurableSeq != uint64(tt.n) || st.FirstSeq != 1 {
				t.Errorf("Stats seqs = first %d last %d durable %d, want 1 %d %d", st.FirstSeq, st.LastSeq, st.DurableSeq, tt.n, tt.n)
			}
			if files := segFiles(t, j.opts.Dir); len(files) != st.Segments {
				t.Errorf("%d segment files, want %d", len(files), st.Segments)
			}
			// Every segment respects SegmentSize unless it holds one record.
			if tt.segmentSize > 0 {
				j.segMu.RLock()
				for _, s := range j.segs {
					if s.size > tt.segmentSize && s.last != s.base {
						t.Errorf("segment %d has %d bytes and %d records, want <= %d bytes", s.base, s.size, s.last-s.base+1, tt.segmentSize)
					}
				}
				j.segMu.RUnlock()
			}
		})
	}
}

func TestEmptyJournal(t *testing.T) {
	j := open(t, Options{})
	if got := j.LastSeq(); got != 0 {
		t.Errorf("LastSeq() = %d, want 0", got)
	}
	if got := j.FirstSeq(); got != 1 {
		t.Errorf("FirstSeq() = %d, want 1", got)
	}
	if got := readAll(t, j, 0); len(got) != 0 {
		t.Errorf("readAll = %v, want nothing", got)
	}
	first, err := j.Append(context.Background())
	if err != nil || first != 1 {
		t.Errorf("Append() = %d, %v, want 1, nil", first, err)
	}
	first, err = j.Append(context.Background(), []byte{})
	if err != nil || first != 1 {
		t.Errorf("Append(empty payload) = %d, %v, want 1, nil", first, err)
	}
	if diff := cmp.Diff([]rec{{1, []byte{}}}, readAll(t, j, 1)); diff != "" {
		t.Errorf("read back (-want +got):\n%s", diff)
	}
}

func TestReaderFromUsesIndex(t *testing.T) {
	j := open(t, Options{SegmentSize: 1 << 20})
	const n = 30000 // ~3.3 MB: several segments, each with ~15 index entries
	appendSeqs(t, j, n, 500)
	j.segMu.RLock()
	nsegs, nidx := len(j.segs), len(j.segs[0].index)
	j.segMu.RUnlock()
	if nsegs < 3 || nidx < 10 {
		t.Fatalf("segments = %d, index entries in first = %d; want >= 3 and >= 10", nsegs, nidx)
	}
	for _, from := range []uint64{0, 1, 2, 777, 5000, 9999, 10000, 10001, 12345, 29999, 30000} {
		r, err := j.Reader(from)
		if err != nil {
			t.Fatalf("Reader(%d): %v", from, err)
		}
		want := max(from, 1)
		seq, p, ok, err := r.TryNext()
		if err != nil || !ok || seq != want || !bytes.Equal(p, payloadFor(want)) {
			t.Errorf("Reader(%d).TryNext() = %d, ok %v, err %v, want seq %d", from, seq, ok, err, want)
		}
		// The reader started at an index entry near want, not at the segment start.
		j.segMu.RLock()
		var seg *segment
		for _, s := range j.segs {
			if s.base <= want {
				seg = s
			}
		}
		e := seg.locate(want)
		j.segMu.RUnlock()
		if want-e.seq > 1000 {
			t.Errorf("locate(%d) = seq %d: index too sparse", want, e.seq)
		}
		if r.bufOff != e.off {
			t.Errorf("Reader(%d) read from offset %d, want index offset %d", from, r.bufOff, e.off)
		}
		r.Close()
	}
	// Reading from the middle to the end sees every record.
	if diff := diffRecs(wantRecs(12345, n), readAll(t, j, 12345)); diff != "" {
		t.Errorf("readAll(12345) (-want +got):\n%s", diff)
	}
}

func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestReaderFollowsLive(t *testing.T) {
	j := open(t, Options{SegmentSize: 512})
	r, err := j.Reader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// Idle: Next blocks until its context ends, without burning CPU.
	before := cpuTime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	start := time.Now()
	_, _, err = r.Next(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on empty journal = %v, want context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el < 290*time.Millisecond {
		t.Errorf("Next returned after %v, want it blocked until the 300ms deadline", el)
	}
	if cpu := cpuTime(t) - before; cpu > 100*time.Millisecond {
		t.Errorf("process used %v CPU while a Reader waited 300ms idle, want < 100ms (spinning?)", cpu)
	}

	// A blocked Next wakes when a record becomes durable; records cross segments.
	const n = 200
	got := make(chan rec, n)
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for range n {
			seq, p, err := r.Next(ctx)
			if err != nil {
				errc <- err
				return
			}
			got <- rec{seq, bytes.Clone(p)}
		}
		errc <- nil
	}()
	time.Sleep(20 * time.Millisecond) // let it block
	for range n {
		first, err := j.Write(1, encSeq)
		if err != nil {
			t.Fatal(err)
		}
		// The blocked reader wakes and sees the record once it is durable.
		select {
		case g := <-got:
			if g.Seq != first || !bytes.Equal(g.Payload, payloadFor(first)) {
				t.Fatalf("reader got seq %d, want %d", g.Seq, first)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("reader did not wake for seq %d", first)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("Next: %v", err)
	}
}

func TestReaderNeverSeesNonDurable(t *testing.T) {
	// With a slow flusher (split writes with a sleep), records are assigned
	// long before they are durable; a reader must stop at DurableSeq.
	j := open(t, Options{Fsync: FsyncAlways, splitWrite: 2 * time.Millisecond})
	r, err := j.Reader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var read uint64
	for i := range 50 {
		if _, err := j.Write(3, encSeq); err != nil {
			t.Fatal(err)
		}
		for {
			seq, _, ok, err := r.TryNext()
			if err != nil {
				t.Fatalf("TryNext: %v", err)
			}
			if !ok {
				break
			}
			if d := j.DurableSeq(); seq > d {
				t.Fatalf("round %d: reader returned seq %d above DurableSeq %d", i, seq, d)
			}
			read = seq
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for read < 150 {
		seq, _, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		read = seq
	}
}

func TestReopenPreservesEverything(t *testing.T) {
	dir := t.TempDir()
	for round := range 4 {
		j, err := Open(Options{Dir: dir, SegmentSize: 2048, Logger: discardLogger()})
		if err != nil {
			t.Fatalf("round %d: Open: %v", round, err)
		}
		want := uint64(round * 100)
		if got := j.LastSeq(); got != want {
			t.Errorf("round %d: LastSeq() after reopen = %d, want %d", round, got, want)
		}
		if got := j.DurableSeq(); got != want {
			t.Errorf("round %d: DurableSeq() after reopen = %d, want %d", round, got, want)
		}
		if diff := diffRecs(wantRecs(1, want), readAll(t, j, 1)); diff != "" {
			t.Fatalf("round %d: read back (-want +got):\n%s", round, diff)
		}
		appendSeqs(t, j, 100, 9)
		if err := j.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

func TestOpenLocked(t *testing.T) {
	j := open(t, Options{})
	_, err := Open(Options{Dir: j.opts.Dir, Logger: discardLogger()})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestFsyncPolicies(t *testing.T) {
	tests := []struct {
		policy FsyncPolicy
		// fsyncs made by Append of one batch (before Close)
		wantFsyncsAfterAppend func(n uint64) bool
	}{
		{FsyncAlways, func(n uint64) bool { return n >= 1 }},
		{FsyncInterval, func(n uint64) bool { return true }},
		{FsyncNever, func(n uint64) bool { return n == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.policy.String(), func(t *testing.T) {
			j := open(t, Options{Fsync: tt.policy, FsyncInterval: 5 * time.Millisecond})
			first, err := j.Append(context.Background(), []byte("a"), []byte("b"), []byte("c"))
			if err != nil {
				t.Fatal(err)
			}
			if first != 1 {
				t.Errorf("Append first = %d, want 1", first)
			}
			// Acknowledged means durable per policy.
			if d := j.DurableSeq(); d < 3 {
				t.Errorf("DurableSeq() after Append = %d, want >= 3", d)
			}
			st := j.Stats()
			if !tt.wantFsyncsAfterAppend(st.Fsyncs) {
				t.Errorf("Fsyncs after Append = %d, unexpected for %v", st.Fsyncs, tt.policy)
			}
			if tt.policy == FsyncAlways && st.Fsyncs > 0 && st.FsyncNanos <= 0 {
				t.Errorf("FsyncNanos = %d, want > 0", st.FsyncNanos)
			}
			if tt.policy == FsyncInterval {
				deadline := time.Now().Add(5 * time.Second)
				for j.Stats().Fsyncs == 0 && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				if got := j.Stats().Fsyncs; got == 0 {
					t.Errorf("interval policy: no fsync within 5s")
				}
				// Idle journal: no more fsyncs once synced.
				n := j.Stats().Fsyncs
				time.Sleep(30 * time.Millisecond)
				if got := j.Stats().Fsyncs; got != n {
					t.Errorf("interval policy: %d fsyncs while idle, want 0", got-n)
				}
			}
			// WaitDurable on an already durable seq returns at once.
			if err := j.WaitDurable(context.Background(), 2); err != nil {
				t.Errorf("WaitDurable(2) = %v", err)
			}
			// WaitDurable on an unassigned seq waits for ctx.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if err := j.WaitDurable(ctx, 100); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("WaitDurable(unassigned) = %v, want DeadlineExceeded", err)
			}
		})
	}
}

func TestGroupCommitSharesFsyncs(t *testing.T) {
	j := open(t, Options{Fsync: FsyncAlways})
	const writers, each = 32, 20
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				if _, err := j.Append(context.Background(), []byte("x")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st := j.Stats()
	if st.LastSeq != writers*each {
		t.Fatalf("LastSeq = %d, want %d", st.LastSeq, writers*each)
	}
	if st.Fsyncs >= writers*each/2 {
		t.Errorf("Fsyncs = %d for %d concurrent appends, want group commit to share them (< %d)", st.Fsyncs, writers*each, writers*each/2)
	}
}

func TestCloseIdempotentAndErrClosed(t *testing.T) {
	j := open(t, Options{})
	appendSeqs(t, j, 10, 3)
	r, err := j.Reader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	blocked := make(chan error, 1)
	r2, _ := j.Reader(11)
	defer r2.Close()
	go func() {
		_, _, err := r2.Next(context.Background())
		blocked <- err
	}()
	for i := range 3 {
		if err := j.Close(); err != nil {
			t.Fatalf("Close #%d = %v, want nil", i+1, err)
		}
	}
	select {
	case err := <-blocked:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("blocked Next after Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked Next did not return after Close")
	}
	ctx := context.Background()
	checks := []struct {
		name string
		err  error
	}{
		{"Write", func() error { _, err := j.Write(1, encSeq); return err }()},
		{"Append", func() error { _, err := j.Append(ctx, []byte("x")); return err }()},
		{"WaitDurable(unassigned)", j.WaitDurable(ctx, 11)},
		{"Reader", func() error { _, err := j.Reader(1); return err }()},
		{"Reader.Next", func() error { _, _, err := r.Next(ctx); return err }()},
		{"Reader.TryNext", func() error { _, _, _, err := r.TryNext(); return err }()},
	}
	for _, c := range checks {
		if !errors.Is(c.err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", c.name, c.err)
		}
	}
	if err := j.WaitDurable(ctx, 10); err != nil {
		t.Errorf("WaitDurable(durable seq) after Close = %v, want nil", err)
	}
	select {
	case <-j.Changed():
	default:
		t.Errorf("Changed() after Close is not closed")
	}
}

func TestCloseFlushesUnwaitedWrites(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []FsyncPolicy{FsyncAlways, FsyncInterval, FsyncNever} {
		j, err := Open(Options{Dir: dir, Fsync: p, Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		before := j.LastSeq()
		for range 100 {
			if _, err := j.Write(2, encSeq); err != nil {
				t.Fatal(err)
			}
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		j, err = Open(Options{Dir: dir, Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := j.LastSeq(), before+200; got != want {
			t.Errorf("%v: LastSeq after Close+Open = %d, want %d", p, got, want)
		}
		j.Close()
	}
}

func TestWriteEncodeErrorRollsBack(t *testing.T) {
	j := open(t, Options{SegmentSize: 300})
	appendSeqs(t, j, 5, 5)
	boom := errors.New("boom")
	_, err := j.Write(10, func(i int, seq uint64, dst []byte) ([]byte, error) {
		if i == 7 {
			return dst, boom
		}
		return appendPayload(dst, seq), nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write with failing enc = %v, want boom", err)
	}
	if _, err := j.Write(1, func(int, uint64, []byte) ([]byte, error) { return nil, nil }); err == nil {
		t.Fatalf("Write with enc dropping dst = nil error, want error")
	}
	if got := j.LastSeq(); got != 5 {
		t.Fatalf("LastSeq after failed Write = %d, want 5", got)
	}
	appendSeqs(t, j, 20, 4)
	if diff := diffRecs(wantRecs(1, 25), readAll(t, j, 1)); diff != "" {
		t.Fatalf("read back (-want +got):\n%s", diff)
	}
	j.Close()
	j2 := open(t, Options{Dir: j.opts.Dir})
	if diff := diffRecs(wantRecs(1, 25), readAll(t, j2, 1)); diff != "" {
		t.Fatalf("read back after reopen (-want +got):\n%s", diff)
	}
}

func TestWriteAllocs(t *testing.T) {
	j := open(t, Options{Fsync: FsyncNever})
	p := bytes.Repeat([]byte("x"), 100)
	enc := func(_ int, _ uint64, dst []byte) ([]byte, error) { return append(dst, p...), nil }
	for _, n := range []int{1, 64} {
		// Warm up the buffers.
		for range 2000 {
			if _, err := j.Write(n, enc); err != nil {
				t.Fatal(err)
			}
		}
		allocs := testing.AllocsPerRun(2000, func() {
			if _, err := j.Write(n, enc); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("Write(%d) = %v allocs/op, want 0", n, allocs)
		}
	}
}

func TestBackpressure(t *testing.T) {
	// The pending buffer fills only where the flusher writes it (a mapped
	// segment is copied into by each Write).
	j := open(t, Options{Fsync: FsyncNever, maxPending: 4096, splitWrite: time.Millisecond, noMap: true})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				if _, err := j.Write(4, encSeq); err != nil {
					t.Error(err)
					return
				}
				j.mu.Lock()
				pend := j.pendBytes
				j.mu.Unlock()
				if pend > 4096+4*300 {
					t.Errorf("pending bytes = %d, want bounded near 4096", pend)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := j.WaitDurable(context.Background(), 1600); err != nil {
		t.Fatal(err)
	}
	if got := j.Stats().BackpressureWaits; got == 0 {
		t.Errorf("BackpressureWaits = 0, want > 0")
	}
	if diff := diffRecs(wantRecs(1, 1600), readAll(t, j, 1)); diff != "" {
		t.Fatalf("read back (-want +got):\n%s", diff)
	}
}

func TestConcurrentWritersAndReaders(t *testing.T) {
	j := open(t, Options{SegmentSize: 8 << 10, Fsync: FsyncInterval, FsyncInterval: time.Millisecond})
	const writers, each = 8, 300
	total := uint64(writers * each)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 3 {
		wg.Go(func() {
			r, err := j.Reader(1)
			if err != nil {
				t.Error(err)
				return
			}
			defer r.Close()
			for want := uint64(1); want <= total; want++ {
				seq, p, err := r.Next(ctx)
				if err != nil {
					t.Errorf("Next: %v", err)
					return
				}
				if seq != want || !bytes.Equal(p, payloadFor(seq)) {
					t.Errorf("Next = seq %d (payload ok %v), want %d", seq, bytes.Equal(p, payloadFor(seq)), want)
					return
				}
			}
		})
	}
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				var err error
				if (w+i)%2 == 0 {
					var first uint64
					first, err = j.Write(1, encSeq)
					if err == nil {
						err = j.WaitDurable(ctx, first)
					}
				} else {
					_, err = j.Write(1, encSeq)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestWriteFailureIsSticky(t *testing.T) {
	dir := t.TempDir()
	// noMap: a closed descriptor fails write(2); a mapped segment would
	// still take the copy.
	j, err := Open(Options{Dir: dir, Logger: discardLogger(), noMap: true})
	if err != nil {
		t.Fatal(err)
	}
	appendSeqs(t, j, 5, 5)
	// Pull the file out from under the idle flusher: the next write fails.
	j.active.Close()
	r, err := j.Reader(6)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	first, err := j.Write(1, encSeq)
	if err != nil {
		t.Fatalf("Write = %v, want it to succeed (the failure shows at flush)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := j.WaitDurable(ctx, first); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitDurable after write failure = %v, want the write error", err)
	}
	if _, err := j.Write(1, encSeq); err == nil {
		t.Errorf("Write after failure = nil, want the sticky error")
	}
	if _, _, err := r.Next(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Reader.Next after failure = %v, want the write error", err)
	}
	if got := j.DurableSeq(); got != 5 {
		t.Errorf("DurableSeq = %d, want 5", got)
	}
	j.Close()
	j2 := open(t, Options{Dir: dir})
	if diff := diffRecs(wantRecs(1, 5), readAll(t, j2, 1)); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}
}

func TestAlwaysFsyncsEverySegmentOfABatch(t *testing.T) {
	// Records of ~130 bytes, 3 per 400-byte segment: one Write of 10 records
	// is one flush batch spanning 4 segments. Each finished segment must be
	// fsynced before the next is created, and the last one before the ack.
	j := open(t, Options{SegmentSize: 400, Fsync: FsyncAlways})
	p := bytes.Repeat([]byte("x"), 110)
	first, err := j.Write(10, func(_ int, _ uint64, dst []byte) ([]byte, error) { return append(dst, p...), nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := j.WaitDurable(context.Background(), first+9); err != nil {
		t.Fatal(err)
	}
	st := j.Stats()
	if st.Segments != 4 || st.Flushes != 1 {
		t.Fatalf("Segments = %d, Flushes = %d, want 4 and 1", st.Segments, st.Flushes)
	}
	if st.Fsyncs != 4 {
		t.Errorf("Fsyncs = %d for a batch over 4 segments, want 4", st.Fsyncs)
	}
}

func TestIntervalAcksWrittenBeforeFsync(t *testing.T) {
	// With a long interval, Append returns once the record is written to the
	// OS, before any fsync, and readers see it; Close fsyncs.
	j := open(t, Options{Fsync: FsyncInterval, FsyncInterval: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := j.Append(ctx, []byte("a"), []byte("b")); err != nil {
		t.Fatalf("Append = %v, want nil without waiting for the 1h fsync", err)
	}
	if st := j.Stats(); st.Fsyncs != 0 || st.DurableSeq != 2 || st.BytesWritten == 0 {
		t.Errorf("Stats = %+v, want Fsyncs 0, DurableSeq 2, BytesWritten > 0", st)
	}
	if got := readAll(t, j, 1); len(got) != 2 {
		t.Errorf("reader saw %d records, want 2", len(got))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if got := j.Stats().Fsyncs; got != 1 {
		t.Errorf("Fsyncs after Close = %d, want 1", got)
	}
}

func TestReaderFromFuture(t *testing.T) {
	j := open(t, Options{SegmentSize: 512})
	appendSeqs(t, j, 3, 3)
	r, err := j.Reader(10)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, _, ok, err := r.TryNext(); ok || err != nil {
		t.Fatalf("TryNext before seq 10 exists = ok %v, err %v, want false, nil", ok, err)
	}
	appendSeqs(t, j, 20, 4) // crosses several segments
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for want := uint64(10); want <= 23; want++ {
		seq, p, err := r.Next(ctx)
		if err != nil || seq != want || !bytes.Equal(p, payloadFor(want)) {
			t.Fatalf("Next = %d, %v, want seq %d", seq, err, want)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := r.TryNext(); !errors.Is(err, ErrClosed) {
		t.Errorf("TryNext after Reader.Close = %v, want ErrClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Reader.Close = %v, want nil", err)
	}
}
