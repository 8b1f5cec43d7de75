package propagate

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
)

// openDedup opens a journal and a manager with idempotent ingest in dir.
func openDedup(t testing.TB, dir string, o DedupOptions) (*Manager, *journal.Journal) {
	t.Helper()
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: journal.FsyncNever, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{Journal: j, Dir: dir, Source: "semprop://test", Dedup: o, Logger: quiet})
	if err != nil {
		_ = j.Close()
		t.Fatal(err)
	}
	return m, j
}

func closeDedup(t testing.TB, m *Manager, j *journal.Journal) {
	t.Helper()
	if err := m.Close(); err != nil {
		t.Error(err)
	}
	if err := j.Close(); err != nil {
		t.Error(err)
	}
}

// idN is a fixed event id for test event n.
func idN(n int) event.ID {
	var id event.ID
	binary.BigEndian.PutUint64(id[8:], uint64(n)+1)
	return id
}

func evN(src string, n int) *event.Event {
	return &event.Event{ID: idN(n), Source: src, Type: "fs.write", Subject: fmt.Sprintf("/f/%d", n)}
}

func TestDedupPublishAgain(t *testing.T) {
	m, j := openDedup(t, t.TempDir(), DedupOptions{Window: time.Minute})
	defer closeDedup(t, m, j)
	ctx := context.Background()
	sub, err := m.Subscribe(SubscribeOptions{Queue: 64})
	if err != nil {
		t.Fatal(err)
	}
	first, err := m.Publish(ctx, evN("a", 1))
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.Publish(ctx, evN("a", 1))
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Errorf("Publish of the same source+id again = seq %d, want the first's %d", again, first)
	}
	other, err := m.Publish(ctx, evN("b", 1)) // same id, other source
	if err != nil {
		t.Fatal(err)
	}
	if other == first {
		t.Errorf("same id from another source answered with seq %d: want a new event", other)
	}
	// SourceID (a producer's non-ULID id) is the key when set.
	u1 := &event.Event{Source: "a", SourceID: "8d2c-uuid", Type: "fs.write"}
	u2 := &event.Event{Source: "a", SourceID: "8d2c-uuid", Type: "fs.write"}
	s1, err := m.Publish(ctx, u1)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := m.Publish(ctx, u2)
	if err != nil {
		t.Fatal(err)
	}
	if s1 != s2 {
		t.Errorf("same source+SourceID: seqs %d and %d, want equal", s1, s2)
	}
	if got := j.LastSeq(); got != 3 {
		t.Errorf("journal LastSeq = %d, want 3 (duplicates not stored)", got)
	}
	// Subscribers saw each event once.
	var seen []uint64
	for {
		ev, ok := sub.TryNext()
		if !ok {
			break
		}
		seen = append(seen, ev.Seq)
	}
	if fmt.Sprint(seen) != "[1 2 3]" {
		t.Errorf("subscriber saw seqs %v, want [1 2 3]", seen)
	}
	if st := m.Stats(); st.Duplicates != 2 || st.Published != 3 || st.DedupRemembered != 3 {
		t.Errorf("Stats: Duplicates %d Published %d DedupRemembered %d, want 2 3 3", st.Duplicates, st.Published, st.DedupRemembered)
	}
}

func TestDedupBatch(t *testing.T) {
	m, j := openDedup(t, t.TempDir(), DedupOptions{Window: time.Minute})
	defer closeDedup(t, m, j)
	ctx := context.Background()
	for _, size := range []int{3, 40} { // the small and the large batch path
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			base := size * 1000
			firstBatch := []*event.Event{evN("a", base), evN("a", base+1)}
			if err := m.PublishBatch(ctx, firstBatch); err != nil {
				t.Fatal(err)
			}
			before := j.LastSeq()
			// A retried batch: the two known events, copies within the batch,
			// and new ones.
			var batch []*event.Event
			for i := range size {
				batch = append(batch, evN("a", base+i%(size/2+1)))
			}
			if err := m.PublishBatch(ctx, batch); err != nil {
				t.Fatal(err)
			}
			wantNew := size/2 + 1 - 2
			if got := j.LastSeq() - before; got != uint64(wantNew) {
				t.Errorf("stored %d new events, want %d", got, wantNew)
			}
			bySubject := map[string]uint64{}
			for _, ev := range append(firstBatch, batch...) {
				if ev.Seq == 0 {
					t.Fatalf("event %s has no seq", ev.Subject)
				}
				if s, ok := bySubject[ev.Subject]; ok && s != ev.Seq {
					t.Errorf("%s answered with seqs %d and %d, want one", ev.Subject, s, ev.Seq)
				}
				bySubject[ev.Subject] = ev.Seq
			}
			if firstBatch[0].Seq != batch[0].Seq {
				t.Errorf("retry of the first event: seq %d, want %d", batch[0].Seq, firstBatch[0].Seq)
			}
		})
	}
}

func TestDedupSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	m, j := openDedup(t, dir, DedupOptions{Window: time.Minute})
	var seqs []uint64
	for i := range 50 {
		s, err := m.Publish(ctx, evN("a", i))
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, s)
	}
	closeDedup(t, m, j)
	m, j = openDedup(t, dir, DedupOptions{Window: time.Minute})
	defer closeDedup(t, m, j)
	batch := make([]*event.Event, 50)
	for i := range batch {
		batch[i] = evN("a", i)
	}
	if err := m.PublishBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for i, ev := range batch {
		if ev.Seq != seqs[i] {
			t.Errorf("after restart, event %d answered with seq %d, want %d", i, ev.Seq, seqs[i])
		}
	}
	if got := j.LastSeq(); got != 50 {
		t.Errorf("journal LastSeq = %d, want 50", got)
	}
}

func TestDedupWindowAndBound(t *testing.T) {
	ctx := context.Background()
	t.Run("window", func(t *testing.T) {
		m, j := openDedup(t, t.TempDir(), DedupOptions{Window: 50 * time.Millisecond})
		defer closeDedup(t, m, j)
		s1, _ := m.Publish(ctx, evN("a", 1))
		time.Sleep(120 * time.Millisecond)
		_, _ = m.Publish(ctx, evN("a", 2)) // expires what is older than the window
		s3, err := m.Publish(ctx, evN("a", 1))
		if err != nil {
			t.Fatal(err)
		}
		if s3 == s1 {
			t.Errorf("a copy after the window answered with the old seq %d: want a new event", s1)
		}
	})
	t.Run("max", func(t *testing.T) {
		m, j := openDedup(t, t.TempDir(), DedupOptions{Window: time.Hour, Max: 10})
		defer closeDedup(t, m, j)
		for i := range 100 {
			if _, err := m.Publish(ctx, evN("a", i)); err != nil {
				t.Fatal(err)
			}
		}
		if n := m.Stats().DedupRemembered; n != 10 {
			t.Errorf("remembered %d events, want Max 10", n)
		}
		s, _ := m.Publish(ctx, evN("a", 95))
		if s != 96 {
			t.Errorf("recent copy answered with seq %d, want 96", s)
		}
		s, _ = m.Publish(ctx, evN("a", 0))
		if s != 101 {
			t.Errorf("forgotten copy answered with seq %d, want a new one (101)", s)
		}
	})
	t.Run("rebuild-window", func(t *testing.T) {
		dir := t.TempDir()
		m, j := openDedup(t, dir, DedupOptions{Window: time.Hour})
		old := evN("a", 1)
		old.HLC = event.HLC{Wall: time.Now().Add(-2 * time.Hour).UnixNano()}
		if _, err := m.Publish(ctx, old); err != nil {
			t.Fatal(err)
		}
		for i := 2; i < 20; i++ {
			if _, err := m.Publish(ctx, evN("a", i)); err != nil {
				t.Fatal(err)
			}
		}
		closeDedup(t, m, j)
		m, j = openDedup(t, dir, DedupOptions{Window: time.Hour})
		defer closeDedup(t, m, j)
		if n := m.Stats().DedupRemembered; n != 18 {
			t.Errorf("rebuilt window holds %d events, want 18 (one is older than the window)", n)
		}
	})
}

func TestDedupOffByDefault(t *testing.T) {
	m, j := openDedup(t, t.TempDir(), DedupOptions{})
	defer closeDedup(t, m, j)
	s1, _ := m.Publish(context.Background(), evN("a", 1))
	s2, _ := m.Publish(context.Background(), evN("a", 1))
	if s1 == s2 {
		t.Errorf("without a window, a copy answered with seq %d: want it stored", s1)
	}
}

// The retry-under-SIGKILL test runs a publisher in a child process (this
// test binary again): it publishes batches with fixed ids and prints each
// acknowledged batch's seqs. The parent kills it mid-way, twice, and each
// new child retries every batch from the start.

const (
	killBatches   = 300
	killBatchSize = 8
	killEnv       = "SEMPROP_DEDUP_KILL_DIR"
)

func TestDedupKillChild(t *testing.T) {
	dir := os.Getenv(killEnv)
	if dir == "" {
		t.Skip("child of TestDedupRetryAfterKill")
	}
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: journal.FsyncAlways, Logger: quiet})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	m, err := New(Options{Journal: j, Dir: dir, Dedup: DedupOptions{Window: time.Hour}, Logger: quiet})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	for b := range killBatches {
		batch := make([]*event.Event, killBatchSize)
		for i := range batch {
			batch[i] = evN("retry", b*killBatchSize+i)
		}
		if err := m.PublishBatch(context.Background(), batch); err != nil {
			fmt.Fprintln(w, "error", err)
			w.Flush()
			os.Exit(2)
		}
		fmt.Fprint(w, "ack ", b)
		for _, ev := range batch {
			fmt.Fprint(w, " ", ev.Seq)
		}
		fmt.Fprintln(w)
		w.Flush()
	}
	fmt.Fprintln(w, "done")
	w.Flush()
	os.Exit(0)
}

func TestDedupRetryAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns children")
	}
	dir := t.TempDir()
	acked := map[int]uint64{} // event number → seq it was acknowledged with
	run := func(killAfter int) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestDedupKillChild$")
		cmd.Env = append(os.Environ(), killEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		n := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 0 || f[0] != "ack" {
				continue
			}
			b, _ := strconv.Atoi(f[1])
			for i, s := range f[2:] {
				seq, _ := strconv.ParseUint(s, 10, 64)
				k := b*killBatchSize + i
				if prev, ok := acked[k]; ok && prev != seq {
					t.Errorf("event %d acknowledged with seq %d, then %d", k, prev, seq)
				}
				acked[k] = seq
			}
			if n++; killAfter > 0 && n == killAfter {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				break
			}
		}
		_ = cmd.Wait()
	}
	run(60)  // killed after 60 batches were acknowledged
	run(150) // retries all: the first 60 are duplicates
	run(0)   // retries all to the end
	if len(acked) != killBatches*killBatchSize {
		t.Fatalf("%d events acknowledged, want %d", len(acked), killBatches*killBatchSize)
	}
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	r, err := j.Reader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stored := map[event.ID]uint64{}
	twice := 0
	for {
		seq, payload, ok, err := r.TryNext()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		var ev event.Event
		if err := decodeRecord(seq, payload, &ev); err != nil {
			t.Fatal(err)
		}
		if _, dup := stored[ev.ID]; dup {
			twice++
		}
		stored[ev.ID] = seq
	}
	lost := 0
	for k, seq := range acked {
		s, ok := stored[idN(k)]
		if !ok {
			lost++
			continue
		}
		if s != seq {
			t.Errorf("event %d acknowledged with seq %d, stored at %d", k, seq, s)
		}
	}
	if twice != 0 || lost != 0 {
		t.Errorf("stored twice: %d, lost: %d; want 0 and 0", twice, lost)
	}
	t.Logf("%d events acknowledged over 3 runs (2 SIGKILLed), %d stored", len(acked), len(stored))
}

// BenchmarkPublishBatchDedup measures what idempotent ingest costs
// PublishBatch: the same batches with the window off and on.
func BenchmarkPublishBatchDedup(b *testing.B) {
	for _, tc := range []struct {
		name string
		o    DedupOptions
	}{{"off", DedupOptions{}}, {"on", DedupOptions{Window: DefaultDedupWindow}}} {
		b.Run(tc.name, func(b *testing.B) {
			m, j := openDedup(b, b.TempDir(), tc.o)
			defer closeDedup(b, m, j)
			ctx := context.Background()
			batch := make([]*event.Event, 64)
			evs := make([]event.Event, 64)
			b.ReportAllocs()
			for b.Loop() {
				for i := range batch {
					evs[i] = event.Event{ID: event.NewID(), Source: "bench", Type: "fs.write", Subject: "/data/a.md"}
					batch[i] = &evs[i]
				}
				if err := m.PublishBatch(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// fakeRemote stands for a cluster sequencer: it orders through the journal
// and hands events to the delivery hook, as a Raft apply would.
type fakeRemote struct {
	mu      sync.Mutex
	j       *journal.Journal
	deliver Deliver
}

func (f *fakeRemote) Sequence(ctx context.Context, evs []*event.Event) error {
	f.mu.Lock()
	first, err := f.j.Write(len(evs), func(i int, seq uint64, dst []byte) ([]byte, error) {
		evs[i].Seq = seq
		return evs[i].AppendBinary(dst)
	})
	if err == nil {
		f.deliver(evs)
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.j.WaitDurable(ctx, first+uint64(len(evs))-1)
}

func TestDedupRemoteSequencer(t *testing.T) {
	dir := t.TempDir()
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: journal.FsyncNever, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{Journal: j, Dir: dir, Logger: quiet, Dedup: DedupOptions{Window: time.Minute},
		NewSequencer: func(d Deliver) (Sequencer, error) { return &fakeRemote{j: j, deliver: d}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer closeDedup(t, m, j)
	ctx := context.Background()
	first := []*event.Event{evN("a", 1), evN("a", 2), evN("a", 1)}
	if err := m.PublishBatch(ctx, first); err != nil {
		t.Fatal(err)
	}
	if first[2].Seq != first[0].Seq {
		t.Errorf("copy inside the batch: seq %d, want %d", first[2].Seq, first[0].Seq)
	}
	again := []*event.Event{evN("a", 2), evN("a", 3)}
	if err := m.PublishBatch(ctx, again); err != nil {
		t.Fatal(err)
	}
	if again[0].Seq != first[1].Seq {
		t.Errorf("retry through the remote sequencer: seq %d, want %d", again[0].Seq, first[1].Seq)
	}
	if got := j.LastSeq(); got != 3 {
		t.Errorf("journal LastSeq = %d, want 3", got)
	}
}

// BenchmarkDedupWindow is idempotent ingest's own work for a batch of 64
// new events (reserve, then record) once the window is full: what it adds
// to PublishBatch, without the journal (filling the batch included).
func BenchmarkDedupWindow(b *testing.B) {
	d := newDedup(DedupOptions{Window: time.Hour})
	evs := make([]event.Event, 64)
	batch := make([]*event.Event, 64)
	var seq, n uint64
	fill := func() { // distinct ids, cheaply
		for i := range batch {
			n++
			evs[i] = event.Event{Source: "bench"}
			binary.BigEndian.PutUint64(evs[i].ID[8:], n)
			batch[i] = &evs[i]
		}
	}
	for range DefaultDedupMax / 64 { // fill the window
		fill()
		fresh, _ := d.reserve(batch)
		for _, ev := range fresh {
			seq++
			ev.Seq = seq
		}
		d.record(fresh)
	}
	b.ReportAllocs()
	for b.Loop() {
		fill()
		fresh, _ := d.reserve(batch)
		for _, ev := range fresh {
			seq++
			ev.Seq = seq
		}
		d.record(fresh)
	}
}
