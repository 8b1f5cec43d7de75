package analytics

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/cputime"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// BenchmarkApply is the cost of folding one event into every operator of
// the engine's view (second and minute panes, four dimensions, paths,
// distinct paths, write sizes, sessions), on a Zipf replay at 2,000
// events a second of event time. cpu-ns/op is the thread's CPU time per
// event (the wall time counts other processes on a shared machine).
func BenchmarkApply(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	evs := replay(1<<18, 2000, 3)
	e := newTestEngine(b, Config{}, Options{Now: func() time.Time { return evs[len(evs)-1].Time }})
	b.ReportAllocs()
	i := 0
	cpu0 := cputime.Thread()
	defer func() { b.ReportMetric(float64(cputime.Thread()-cpu0)/float64(b.N), "cpu-ns/op") }()
	for b.Loop() {
		e.Apply(&evs[i%len(evs)])
		i++
		if i%len(evs) == 0 {
			b.StopTimer()
			// Time goes on: shift the replay by its length.
			for k := range evs {
				evs[k].Time = evs[k].Time.Add(time.Duration(len(evs)/2000+1) * time.Second)
			}
			b.StartTimer()
		}
	}
}

// TestApplyAllocs pins the hot path: an event whose keys the open panes
// already hold allocates nothing.
func TestApplyAllocs(t *testing.T) {
	e := newTestEngine(t, Config{}, Options{})
	now := time.Now()
	ev := fsEvent("fs.write", "/srv/data/a/b", "rsync", 1000, 4096, now)
	ev.Seq = 1
	e.Apply(ev)
	allocs := testing.AllocsPerRun(1000, func() {
		ev.Seq++
		e.Apply(ev)
	})
	if allocs != 0 {
		t.Errorf("Apply of known keys: %v allocs, want 0", allocs)
	}
}

// BenchmarkDurableToAggregate measures the time from an event becoming
// durable (the journal's durable seq passing it, as its notification
// says) to its aggregates being updated, at a paced 100,000 events a
// second published in batches of 100 through the manager, for 2 s per
// iteration. Run with -benchtime=1x (or a few x).
func BenchmarkDurableToAggregate(b *testing.B) {
	const (
		rate     = 100_000
		batch    = 100
		duration = 2 * time.Second
		total    = int(rate * duration / time.Second)
	)
	var lat, wake, groups, perEvent []float64
	var allocs uint64
	var rateSum float64
	runs := 0
	for b.Loop() {
		dir := b.TempDir()
		j, err := journal.Open(journal.Options{Dir: filepath.Join(dir, "journal"), Fsync: journal.FsyncInterval, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		m, err := propagate.New(propagate.Options{Journal: j, Dir: dir, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		first := j.LastSeq() + 1
		durableAt := make([]int64, total+1)
		appliedAt := make([]int64, total+1)
		e, err := New(Config{}, Options{Open: func(from uint64) (Source, error) { return m.Reader(from) }, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		e.applyHook = func(seq uint64) {
			if i := seq - first; i < uint64(len(appliedAt)) {
				appliedAt[i] = nanotime()
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { e.Run(ctx) })
		// The durable watcher: stamps each seq when the journal says it
		// is durable.
		var stop atomic.Bool
		wg.Go(func() {
			seen := first - 1
			for !stop.Load() {
				ch := j.Changed()
				d := j.DurableSeq()
				now := nanotime()
				for s := seen + 1; s <= d; s++ {
					if i := s - first; i < uint64(len(durableAt)) {
						durableAt[i] = now
					}
				}
				seen = max(seen, d)
				select {
				case <-ch:
				case <-time.After(10 * time.Millisecond):
				}
			}
		})
		// Publishers: paced batches from two goroutines (each waits for
		// its batch to be durable: written to the OS under the interval
		// policy, so one batch takes well under the 1 ms pace).
		var ms0, ms1 runtimeStats
		ms0.read()
		paths := make([]string, batch)
		for k := range paths {
			paths[k] = fmt.Sprintf("/srv/d%d/f%d", k%7, k)
		}
		var pubs sync.WaitGroup
		tick := time.NewTicker(time.Millisecond)
		next := make(chan struct{}, 64)
		for range 2 {
			pubs.Go(func() {
				for range next {
					evs := make([]*event.Event, batch)
					now := time.Now()
					for k := range evs {
						evs[k] = fsEvent("fs.write", paths[k], "bench", 1, 512, now)
					}
					if err := m.PublishBatch(context.Background(), evs); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		pubStart := time.Now()
		// A tick the ticker dropped (it keeps one) is made up at the
		// next: the offered rate is the rate, not the ticks that came.
		for sent := 0; sent < total/batch; {
			<-tick.C
			due := min(int(time.Since(pubStart)*rate/time.Second)/batch+1, total/batch)
			for ; sent < due; sent++ {
				next <- struct{}{}
			}
		}
		close(next)
		pubs.Wait()
		rateSum += float64(total) / time.Since(pubStart).Seconds()
		runs++
		tick.Stop()
		deadline := time.Now().Add(5 * time.Second)
		for e.Seq() < j.DurableSeq() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		ms1.read()
		allocs += ms1.mallocs - ms0.mallocs
		stop.Store(true)
		cancel()
		wg.Wait()
		m.Close()
		j.Close()
		for i := range total {
			if durableAt[i] == 0 || appliedAt[i] == 0 {
				continue
			}
			lat = append(lat, float64(max(0, appliedAt[i]-durableAt[i]))/1e3)
		}
		wake, groups, perEvent = splitGroups(durableAt[:total], appliedAt[:total], wake, groups, perEvent)
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("no latency measured")
	}
	q := func(p float64) float64 { return lat[int(p*float64(len(lat)-1))] }
	b.ReportMetric(q(0.5), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(lat[len(lat)-1], "max-µs")
	b.ReportMetric(float64(allocs)/float64(len(lat)), "process-allocs/event")
	// The split of the latency: from the notification to the engine's
	// first apply of the events it made durable (wake-p99), how many
	// events one notification made durable (group-p99), and the wall time
	// per event within a group (group-ns/event, the median group's).
	slices.Sort(wake)
	slices.Sort(groups)
	if len(wake) > 0 {
		b.ReportMetric(wake[len(wake)/2], "wake-p50-µs")
		b.ReportMetric(wake[int(0.99*float64(len(wake)-1))], "wake-p99-µs")
		b.ReportMetric(groups[int(0.99*float64(len(groups)-1))], "group-p99")
	}
	if len(perEvent) > 0 {
		slices.Sort(perEvent)
		b.ReportMetric(perEvent[len(perEvent)/2], "group-ns/event")
	}
	b.ReportMetric(rateSum/float64(runs), "events/s")
}

var benchEpoch = time.Now()

func nanotime() int64 { return int64(time.Since(benchEpoch)) }

type runtimeStats struct{ mallocs uint64 }

func (r *runtimeStats) read() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.mallocs = ms.Mallocs
}

// splitGroups appends, for each group of events the durable watcher
// stamped at once, the time from the stamp to the first apply of the
// group (µs) to wake, the group's size to groups and, for groups of 50
// or more, the time between its first and last apply per event (ns) to
// perEvent.
func splitGroups(durableAt, appliedAt []int64, wake, groups, perEvent []float64) ([]float64, []float64, []float64) {
	for i := 0; i < len(durableAt); {
		j := i
		first := int64(0)
		for ; j < len(durableAt) && durableAt[j] == durableAt[i]; j++ {
			if a := appliedAt[j]; a != 0 && (first == 0 || a < first) {
				first = a
			}
		}
		if durableAt[i] != 0 && first != 0 {
			wake = append(wake, float64(max(0, first-durableAt[i]))/1e3)
			groups = append(groups, float64(j-i))
			if j-i >= 50 && appliedAt[i] != 0 && appliedAt[j-1] != 0 {
				perEvent = append(perEvent, float64(appliedAt[j-1]-appliedAt[i])/float64(j-i-1))
			}
		}
		i = j
	}
	return wake, groups, perEvent
}
