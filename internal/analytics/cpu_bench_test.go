package analytics

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

// threadCPU returns the CPU time the calling OS thread has used: on a
// shared machine, unlike the wall clock, it does not count the time other
// processes held the core.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

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
	recs := make([][]byte, 1000)
	for i := range recs {
		ev := fsEvent("fs.write", fmt.Sprintf("/srv/d%d/f%d", i%100%7, i%100), "bench", 1, 512, start)
		ev.Source = "semprop://bench"
		ev.ID = event.NewIDAt(start.UnixNano() + int64(i))
		rec, err := ev.AppendBinary(nil)
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = rec
	}
	at := start
	e := newTestEngine(b, Config{}, Options{Now: func() time.Time { return at }})
	var ev event.Event
	b.ReportAllocs()
	i := 0
	cpu0 := threadCPU()
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
	b.ReportMetric(float64(threadCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkDecodeApplyRecord is BenchmarkDecodeApply on the record path
// (an engine without token views reading a RecordSource): the fields
// the aggregates use decoded from the binary record, keys from the
// engine's key cache.
func BenchmarkDecodeApplyRecord(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const perSec = 100_000
	start := time.Now().Truncate(time.Second)
	recs := make([][]byte, 1000)
	for i := range recs {
		ev := fsEvent("fs.write", fmt.Sprintf("/srv/d%d/f%d", i%100%7, i%100), "bench", 1, 512, start.Add(time.Duration(i)*time.Second/perSec))
		ev.Source = "semprop://bench"
		ev.ID = event.NewIDAt(start.UnixNano() + int64(i))
		rec, err := ev.AppendBinary(nil)
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = rec
	}
	at := start
	e := newTestEngine(b, Config{}, Options{Now: func() time.Time { return at }})
	var r recordView
	b.ReportAllocs()
	i := 0
	cpu0 := threadCPU()
	for b.Loop() {
		// The records repeat their second every 1,000 events; the clock
		// moves the watermark as BenchmarkDecodeApply's does.
		i++
		at = start.Add(time.Duration(i) * time.Second / perSec)
		e.mu.Lock()
		e.nowSec = at.Unix()
		if err := e.applyRecordLocked(uint64(i), recs[i%len(recs)], &r); err != nil {
			b.Fatal(err)
		}
		e.mu.Unlock()
	}
	b.ReportMetric(float64(threadCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkRecordDecode is the record decoder alone, on the records of
// BenchmarkDecodeApplyRecord (compare event.Event.UnmarshalBinary on the
// same records: BenchmarkRecordUnmarshal).
func BenchmarkRecordDecode(b *testing.B) {
	recs := benchRecords(b)
	var r recordView
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	i := 0
	cpu0 := threadCPU()
	defer func() { b.ReportMetric(float64(threadCPU()-cpu0)/float64(b.N), "cpu-ns/op") }()
	for b.Loop() {
		if err := r.decode(recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkRecordUnmarshal is event.Event.UnmarshalBinary on the records
// of BenchmarkRecordDecode.
func BenchmarkRecordUnmarshal(b *testing.B) {
	recs := benchRecords(b)
	var ev event.Event
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	i := 0
	cpu0 := threadCPU()
	defer func() { b.ReportMetric(float64(threadCPU()-cpu0)/float64(b.N), "cpu-ns/op") }()
	for b.Loop() {
		if err := ev.UnmarshalBinary(recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func benchRecords(b *testing.B) [][]byte {
	start := time.Now().Truncate(time.Second)
	recs := make([][]byte, 100)
	for i := range recs {
		ev := fsEvent("fs.write", fmt.Sprintf("/srv/d%d/f%d", i%7, i), "bench", 1, 512, start.Add(time.Duration(i)*time.Microsecond))
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
