package analytics

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

var _ RecordSource = (*propagate.Reader)(nil)

// recordReplay is replay with the fields the record decoder skips or
// treats specially: events without a time, a process, a uid or a path,
// a size instead of bytes, a late event, attributes and data, and a time
// before 1970.
func recordReplay(n int) []event.Event {
	evs := replay(n, 500, 7)
	for i := range evs {
		ev := &evs[i]
		switch i % 97 {
		case 3:
			ev.Context.Comm = ""
		case 5:
			ev.Subject = ""
		case 7:
			ev.Context = event.Context{Comm: ev.Context.Comm}
			ev.Type = "fs.write"
			ev.Context.SetSize(12345)
		case 11:
			ev.Attrs = []event.Attr{{Key: "k", Value: "v"}}
			ev.Data = []byte(`{"x":1}`)
			ev.DataContentType = "application/json"
		case 13:
			ev.Time = ev.Time.Add(-5 * time.Second) // late
		case 17:
			ev.Context.SetPID(42)
			ev.Context.SetInode(7)
			ev.Context.SetMode(0o644)
			ev.Context.Exe = "/usr/bin/x"
			ev.Context.OldPath = "/old"
			ev.HLC = event.HLC{Wall: 5, Logical: 1}
		}
	}
	evs[len(evs)/2].Time = time.Time{}
	// A jump of the second panes' ring: the first pane after it reuses
	// the slot of the open pane before it, which the jump's watermark
	// closes (in a batch, before the event is applied).
	for i := len(evs) * 3 / 4; i < len(evs); i++ {
		evs[i].Time = evs[i].Time.Add(secRing * time.Second)
	}
	return evs
}

// sliceSource is a Source over encoded events, with records (records
// true) or decoded events only.
type sliceSource struct {
	recs [][]byte
	i    int
	done chan struct{}
}

func (s *sliceSource) Next(ctx context.Context, ev *event.Event) error {
	ok, err := s.TryNext(ev)
	if ok || err != nil {
		return err
	}
	return s.wait(ctx)
}

func (s *sliceSource) wait(ctx context.Context) error {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *sliceSource) TryNext(ev *event.Event) (bool, error) {
	if s.i == len(s.recs) {
		return false, nil
	}
	s.i++
	if err := ev.UnmarshalBinary(s.recs[s.i-1]); err != nil {
		return false, err
	}
	ev.Seq = uint64(s.i)
	return true, nil
}

func (s *sliceSource) Close() error { return nil }

type sliceRecordSource struct{ *sliceSource }

func (s sliceRecordSource) NextRecord(ctx context.Context) (uint64, []byte, error) {
	seq, rec, ok, err := s.TryNextRecord()
	if ok || err != nil {
		return seq, rec, err
	}
	return 0, nil, s.wait(ctx)
}

func (s sliceRecordSource) TryNextRecord() (uint64, []byte, bool, error) {
	if s.i == len(s.recs) {
		return 0, nil, false, nil
	}
	s.i++
	// A reused buffer, overwritten after use: the engine must not keep
	// a reference into it.
	buf := append(scratch[:0], s.recs[s.i-1]...)
	scratch = buf
	return uint64(s.i), buf, true, nil
}

var scratch []byte

// engineResult is everything an engine's aggregates answer, and every
// rollup it emitted.
type engineResult struct {
	Rollups  []string
	Top      map[string]TopResponse
	Summary  Summary
	Sessions []Session
	Seq      uint64
	Late     uint64
}

// runEngineOver runs an engine over src until it read all of evs (their
// encoding); with src nil it feeds evs to Apply one at a time instead.
func runEngineOver(t *testing.T, src Source, evs []event.Event) engineResult {
	t.Helper()
	last := evs[len(evs)-1].Time
	e := newTestEngine(t, Config{}, Options{Open: func(uint64) (Source, error) { return src, nil },
		Now: func() time.Time { return last }})
	var res engineResult
	emit := e.all.emit
	e.all.emit = func(v *view, r *rollup) {
		res.Rollups = append(res.Rollups, fmt.Sprintf("%d %d %d %d %d %v", r.res, r.start, r.count, r.bytes, r.lastSeq, r.items))
		emit(v, r)
	}
	if src == nil {
		for i := range evs {
			ev := evs[i]
			ev.Seq = uint64(i + 1)
			e.Apply(&ev)
		}
		return e.results(t, res)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.Run(ctx) })
	var done chan struct{}
	switch s := src.(type) {
	case *sliceSource:
		done = s.done
	case sliceRecordSource:
		done = s.done
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cancel()
		wg.Wait()
		t.Fatal("engine did not read the replay in 30s")
	}
	cancel()
	wg.Wait()
	return e.results(t, res)
}

// results fills in the query answers of res.
func (e *Engine) results(t *testing.T, res engineResult) engineResult {
	t.Helper()
	res.Top = map[string]TopResponse{}
	for _, by := range []string{"path", "comm", "uid", "dir", "type"} {
		for _, w := range []time.Duration{10 * time.Second, 5 * time.Minute, time.Hour} {
			tr, err := e.Top(nil, by, w, 20)
			if err != nil {
				t.Fatal(err)
			}
			res.Top[by+w.String()] = tr
		}
	}
	var err error
	if res.Summary, err = e.WindowSummary(nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if res.Sessions, err = e.Sessions(nil); err != nil {
		t.Fatal(err)
	}
	res.Seq, res.Late = e.Seq(), e.late.Load()
	return res
}

// TestRecordPathMatchesEvents: an engine reading binary records computes
// exactly what one reading decoded events does (every rollup emitted,
// every query answer), on a replay with every kind of field, and both
// what Apply of one event at a time does (panes closed after each event
// instead of after each batch).
func TestRecordPathMatchesEvents(t *testing.T) {
	evs := recordReplay(20000)
	recs := make([][]byte, len(evs))
	for i := range evs {
		var err error
		if recs[i], err = evs[i].AppendBinary(nil); err != nil {
			t.Fatal(err)
		}
	}
	want := runEngineOver(t, &sliceSource{recs: recs, done: make(chan struct{})}, evs)
	got := runEngineOver(t, sliceRecordSource{&sliceSource{recs: recs, done: make(chan struct{})}}, evs)
	if len(want.Rollups) < 10 || want.Late == 0 {
		t.Fatalf("replay too small to compare: %d rollups, %d late", len(want.Rollups), want.Late)
	}
	// Open sessions come from a map, in no order.
	bySession := cmpopts.SortSlices(func(a, b Session) bool {
		return a.Comm < b.Comm || a.Comm == b.Comm && a.Start < b.Start
	})
	if diff := cmp.Diff(want, got, bySession); diff != "" {
		t.Errorf("record path differs from the event path (-events +records):\n%s", diff)
	}
	// Panes closed after each batch read (up to 256 events) or after
	// each event: the same rollups and answers.
	one := runEngineOver(t, nil, evs)
	if diff := cmp.Diff(one, want, bySession); diff != "" {
		t.Errorf("batches differ from one event at a time (-one +batches):\n%s", diff)
	}
}

// TestApplyRecordAllocs pins the record path: a record whose keys the
// open panes and the key cache already hold allocates nothing.
func TestApplyRecordAllocs(t *testing.T) {
	e := newTestEngine(t, Config{}, Options{})
	now := time.Now()
	ev := fsEvent("fs.write", "/srv/data/a/b", "rsync", 1000, 4096, now)
	rec, err := ev.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	var r recordView
	seq := uint64(1)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nowSec = now.Unix()
	if err := e.applyRecordLocked(seq, rec, &r); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		seq++
		if err := e.applyRecordLocked(seq, rec, &r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("applyRecordLocked of known keys: %v allocs, want 0", allocs)
	}
}

// TestRecordPathThroughJournal: an engine on a propagate.Reader reads
// records (not events) and counts what was published.
func TestRecordPathThroughJournal(t *testing.T) {
	dir := t.TempDir()
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: journal.FsyncInterval, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	var viaRecords bool
	e := newTestEngine(t, Config{}, Options{Open: func(from uint64) (Source, error) {
		r, err := m.Reader(from)
		_, viaRecords = any(r).(RecordSource)
		return r, err
	}})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	now := time.Now()
	var evs []*event.Event
	for i := range 300 {
		evs = append(evs, fsEvent("fs.write", fmt.Sprintf("/srv/d%d/f%d", i%3, i), "cp", 7, 100, now))
	}
	if err := m.PublishBatch(ctx, evs); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.Seq() < j.DurableSeq() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !viaRecords {
		t.Fatal("propagate.Reader is not a RecordSource")
	}
	tr, err := e.Top(nil, "dir", time.Minute, 5)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Total != 300 || tr.TotalBytes != 30000 || len(tr.Items) != 3 || tr.Items[0].Count != 100 {
		t.Errorf("Top(dir) = %+v, want 300 events, 30000 bytes, 3 dirs of 100", tr)
	}
}

// TestReadErrorStopsRun: a record the decoder refuses stops Run at once
// with an error naming its seq, on the record path and on the event
// path (Run used to wait for its context to end before returning: the
// idle ticker only stopped with it).
func TestReadErrorStopsRun(t *testing.T) {
	ev := fsEvent("fs.write", "/a/b", "x", 1, 1, time.Now())
	rec, _ := ev.AppendBinary(nil)
	bad := append(append([]byte(nil), rec...), 0) // a trailing byte
	for _, records := range []bool{false, true} {
		var src Source = &sliceSource{recs: [][]byte{rec, bad}, done: make(chan struct{})}
		if records {
			src = sliceRecordSource{src.(*sliceSource)}
		}
		e := newTestEngine(t, Config{}, Options{Open: func(uint64) (Source, error) { return src, nil }})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		err := e.Run(ctx)
		cancel()
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("records=%v: Run returned after %v, want at once", records, took)
		}
		if errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, event.ErrBinary) && !errors.Is(err, ErrRecord) {
			t.Errorf("records=%v: Run = %v, want a decoding error", records, err)
		}
		if e.Seq() != 1 {
			t.Errorf("records=%v: Seq = %d, want 1 (the good record)", records, e.Seq())
		}
	}
}

// TestEngineHeap bounds the heap of an engine that has seen nothing:
// its hundreds of panes are scanned by every garbage collection, which
// shares the cores with the reader (each pane's maps used to be sized
// for top_paths keys up front: 28 MB).
func TestEngineHeap(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e := newTestEngine(t, Config{}, Options{})
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(e)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 12<<20 {
		t.Errorf("a new engine holds %.1f MB, want at most 12 MB", float64(grew)/(1<<20))
	}
}

// TestCloseAfterGroup: closing the panes the watermark passed (rollups,
// merges into minutes, the detector, the store) waits until the events
// made durable together are applied: the events after the first one of
// a new second are not held up by it. Counted by the panes closed when
// the hook sees each event: none may close between two events of one
// group.
func TestCloseAfterGroup(t *testing.T) {
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var recs [][]byte
	for i := range 10000 {
		ev := fsEvent("fs.write", fmt.Sprintf("/srv/d%d/f%d", i%7, i%100), "bench", 1, 512, start.Add(time.Duration(i)*time.Millisecond))
		rec, err := ev.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	src := sliceRecordSource{&sliceSource{recs: recs, done: make(chan struct{})}}
	e := newTestEngine(t, Config{}, Options{Now: func() time.Time { return start }})
	emitted := 0
	emit := e.all.emit
	e.all.emit = func(v *view, r *rollup) {
		emitted++
		emit(v, r)
	}
	var r recordView
	var during []uint64 // seqs applied after a close in the same group
	for seq := uint64(1); seq <= uint64(len(recs)); {
		before := emitted
		first := seq
		e.applyHook = func(s uint64) {
			if s > first && emitted != before {
				during = append(during, s)
			}
		}
		if err := e.applyNextRecords(context.Background(), src, &r); err != nil {
			t.Fatal(err)
		}
		seq = e.Seq() + 1
	}
	if emitted == 0 {
		t.Fatal("no pane closed: the replay does not cross a second")
	}
	if len(during) > 0 {
		t.Errorf("%d events applied after a pane closed in their group (first seq %d): the close held them up", len(during), during[0])
	}
}
