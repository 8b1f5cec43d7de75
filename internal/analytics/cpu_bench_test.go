package analytics

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/cputime"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// BenchmarkDecodeApply is what the engine does per durable event, decode
// and apply, on the shape of BenchmarkDurableToAggregate's stream (100
// paths, one process, writes, 100,000 events a second of event time). It
// reports the thread's CPU time per event besides the wall time: times
// 100 to 200 (the events made durable together there), it is the floor
// of the last event's latency in a batch.
func BenchmarkDecodeApply(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const perSec = 100_000
	start := time.Now().Truncate(time.Second)
	recs := applyRecords(b, start)
	at := start
	e := newTestEngine(b, Config{}, Options{Now: func() time.Time { return at }})
	var ev event.Event
	b.ReportAllocs()
	i := 0
	cpu0 := cputime.Thread()
	for b.Loop() {
		if err := ev.UnmarshalBinary(recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
		i++
		ev.Seq = uint64(i)
		ev.Time = start.Add(time.Duration(i) * time.Second / perSec)
		at = ev.Time
		e.Apply(&ev)
	}
	b.ReportMetric(float64(cputime.Thread()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkDecodeApplyRecord is BenchmarkDecodeApply on the record path
// (an engine without token views reading a RecordSource): the fields
// the aggregates use decoded from the binary record, keys from the
// engine's key cache. Each record's time is rewritten in place (same
// varint length) to move at 100,000 events a second, as there.
func BenchmarkDecodeApplyRecord(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const perSec = 100_000
	start := time.Now().Truncate(time.Second)
	recs := applyRecords(b, start)
	const timeOff = 1 + 1 + 16 + 1 // version, presence bits, ID, seq 0
	setTime := func(rec []byte, t time.Time) {
		var v [binary.MaxVarintLen64]byte
		n := binary.PutVarint(v[:], t.UnixNano())
		if _, old := binary.Varint(rec[timeOff:]); old != n {
			b.Fatalf("time varint of %d bytes, want %d", n, old)
		}
		copy(rec[timeOff:], v[:n])
	}
	at := start
	e := newTestEngine(b, Config{}, Options{Now: func() time.Time { return at }})
	var r recordView
	b.ReportAllocs()
	i := 0
	cpu0 := cputime.Thread()
	for b.Loop() {
		i++
		at = start.Add(time.Duration(i) * time.Second / perSec)
		rec := recs[i%len(recs)]
		setTime(rec, at)
		e.mu.Lock()
		e.nowSec = at.Unix()
		if err := e.applyRecordLocked(uint64(i), rec, &r); err != nil {
			b.Fatal(err)
		}
		e.closeLocked()
		e.mu.Unlock()
	}
	b.ReportMetric(float64(cputime.Thread()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkRecordDecode is the record decoder alone, on 100 records shaped
// like BenchmarkDecodeApplyRecord's (compare event.Event.UnmarshalBinary
// on the same records: BenchmarkRecordUnmarshal).
func BenchmarkRecordDecode(b *testing.B) {
	var r recordView
	benchDecode(b, r.decode)
}

// BenchmarkRecordUnmarshal is event.Event.UnmarshalBinary on the records
// of BenchmarkRecordDecode.
func BenchmarkRecordUnmarshal(b *testing.B) {
	var ev event.Event
	benchDecode(b, ev.UnmarshalBinary)
}

// benchDecode runs decode over the records of benchRecords, reporting the
// thread's CPU time per record.
func benchDecode(b *testing.B, decode func([]byte) error) {
	recs := benchRecords(b)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	i := 0
	cpu0 := cputime.Thread()
	defer func() { b.ReportMetric(float64(cputime.Thread()-cpu0)/float64(b.N), "cpu-ns/op") }()
	for b.Loop() {
		if err := decode(recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// applyRecords encodes 1000 fs.write events at start over 100 paths in 7
// directories, the records of BenchmarkDecodeApply and
// BenchmarkDecodeApplyRecord.
func applyRecords(b *testing.B, start time.Time) [][]byte {
	return writeRecords(b, 1000, start, func(i int) (string, time.Time) {
		return fmt.Sprintf("/srv/d%d/f%d", i%100%7, i%100), start
	})
}

func benchRecords(b *testing.B) [][]byte {
	start := time.Now().Truncate(time.Second)
	return writeRecords(b, 100, start, func(i int) (string, time.Time) {
		return fmt.Sprintf("/srv/d%d/f%d", i%7, i), start.Add(time.Duration(i) * time.Microsecond)
	})
}

// writeRecords encodes n fs.write events, event i at the path and time
// at(i) returns, with IDs from start on.
func writeRecords(b *testing.B, n int, start time.Time, at func(i int) (string, time.Time)) [][]byte {
	recs := make([][]byte, n)
	for i := range recs {
		path, t := at(i)
		ev := fsEvent("fs.write", path, "bench", 1, 512, t)
		ev.Source = "semprop://bench"
		ev.ID = event.NewIDAt(start.UnixNano() + int64(i))
		rec, err := ev.AppendBinary(nil)
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = rec
	}
	return recs
}

// BenchmarkDrainGroup is what the engine does once woken for a group of
// 200 events the journal just made durable: read them (one pread into
// the reader's buffer), decode and apply them, on the event path
// (decoded events, as with token views) and on the record path. It
// reports the thread's CPU time per event (ns/op is per group).
func BenchmarkDrainGroup(b *testing.B) {
	for _, records := range []bool{false, true} {
		name := "events"
		if records {
			name = "records"
		}
		b.Run(name, func(b *testing.B) { benchDrainGroup(b, records) })
	}
}

func benchDrainGroup(b *testing.B, records bool) {
	const group = 200
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dir := b.TempDir()
	j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: journal.FsyncInterval, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { j.Close() })
	m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	rd, err := m.Reader(j.LastSeq() + 1)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rd.Close() })
	e := newTestEngine(b, Config{}, Options{})
	evs := make([]*event.Event, group)
	paths := make([]string, group)
	for k := range paths {
		paths[k] = fmt.Sprintf("/srv/d%d/f%d", k%7, k%100)
	}
	ctx := context.Background()
	var ev event.Event
	var r recordView
	var cpu time.Duration
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		now := time.Now()
		for k := range evs {
			evs[k] = fsEvent("fs.write", paths[k], "bench", 1, 512, now)
		}
		if err := m.PublishBatch(ctx, evs); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cpu0 := cputime.Thread()
		if records {
			err = e.applyNextRecords(ctx, rd, &r)
		} else {
			err = e.applyNext(ctx, rd, &ev)
		}
		cpu += cputime.Thread() - cpu0
		if err != nil {
			b.Fatal(err)
		}
	}
	if got, want := e.Seq(), j.DurableSeq(); got != want {
		b.Fatalf("engine at seq %d, journal durable at %d: a group was not drained at once", got, want)
	}
	b.ReportMetric(float64(cpu)/float64(b.N*group), "cpu-ns/event")
}
