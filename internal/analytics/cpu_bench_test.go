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
