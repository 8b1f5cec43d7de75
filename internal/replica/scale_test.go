package replica

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

// load publishes n creates on in's tree in batches.
func (in *instance) load(t testing.TB, n int, prefix, hash string) {
	t.Helper()
	const batch = 10000
	for i := 0; i < n; i += batch {
		evs := make([]*event.Event, 0, batch)
		for j := i; j < min(n, i+batch); j++ {
			ev := &event.Event{Type: event.TypeWrite, Subject: fmt.Sprintf("%s/%s/d%03d/file-%07d.txt", in.root, prefix, j%1000, j), Boundary: event.BoundaryKernel}
			ev.Context.SetSize(int64(j))
			ev.Context.SetUID(1000)
			ev.SetAttr("hash", fmt.Sprintf("%s%016x", hash, j))
			evs = append(evs, ev)
		}
		if err := in.m.PublishBatch(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
	}
	waitAppliedFor(t, in, time.Minute)
}

func waitAppliedFor(t testing.TB, in *instance, limit time.Duration) {
	t.Helper()
	want := in.m.Journal().LastSeq()
	deadline := time.Now().Add(limit)
	for in.r.Applied() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s applied %d, want %d", in.name, in.r.Applied(), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type scaleResult struct {
	entries       int
	converge      time.Duration // heal to identical catalogs
	convergeCPU   time.Duration // CPU time of the process meanwhile
	fullBytes     int           // one full-state transfer, compressed
	deltaBytes    uint64        // bytes exchanged to spread 1% changes
	deltaConverge time.Duration
	cpuPer1k      time.Duration // CPU per 1,000 changes per peer
	heapPerEntry  float64
}

// runScale loads n entries on one of three partitioned instances, heals
// and times convergence; then changes 1% of the entries on another and
// counts the bytes it takes to spread them.
func runScale(t testing.TB, n int) scaleResult {
	is, nw := newInstances(t, clusterOpts{n: 3, config: func(i int, c *Config) {
		c.Interval = 200 * time.Millisecond
	}})
	a, b := is[0], is[1]
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	nw.partition([]*instance{a}, []*instance{b, is[2]})
	a.load(t, n, "bulk", "h")
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	res := scaleResult{entries: n, heapPerEntry: float64(ms1.HeapAlloc-ms0.HeapAlloc) / float64(n)}
	a.r.mu.RLock()
	full := a.r.state.Delta(nil)
	a.r.mu.RUnlock()
	res.fullBytes = len((&message{From: "x", Summary: full.Summary, Changes: full.Changes}).seal())

	nw.heal()
	cpuHeal := cpuTime()
	res.converge = waitConverged(t, is, n, max(60*time.Second, time.Duration(n/5000)*time.Second))
	res.convergeCPU = cpuTime() - cpuHeal
	if os.Getenv("SYNC_LOG") != "" {
		fmt.Fprintln(os.Stderr, "=== CONVERGED")
	}

	waitAcked(t, is) // what each knows of the others settles
	quiesce(t, is)   // and no round that started before is still counting bytes

	// 1% of the entries change on b.
	changes := n / 100
	bytes0 := sentAndReceived(is)
	cpu0 := cpuTime()
	evs := make([]*event.Event, 0, changes)
	for j := 0; j < n; j += 100 {
		ev := &event.Event{Type: event.TypeWrite, Subject: fmt.Sprintf("%s/bulk/d%03d/file-%07d.txt", b.root, j%1000, j), Boundary: event.BoundaryKernel}
		ev.Context.SetSize(int64(j + 1))
		ev.SetAttr("hash", fmt.Sprintf("changed%016x", j))
		evs = append(evs, ev)
	}
	start := time.Now()
	if err := b.m.PublishBatch(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	waitAppliedFor(t, b, 10*time.Second)
	for {
		if converged(is, n) {
			if vs := is[2].snapshot().Get(Key{"docs", fmt.Sprintf("bulk/d%03d/file-%07d.txt", 0, 0)}); len(vs) == 1 && vs[0].Origin == "n1" {
				break
			}
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("1% changes did not converge in 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	res.deltaConverge = time.Since(start)
	if os.Getenv("SYNC_LOG") != "" {
		fmt.Fprintln(os.Stderr, "=== DELTA CONVERGED")
	}
	res.cpuPer1k = (cpuTime() - cpu0) / time.Duration(max(1, changes/1000)) / time.Duration(len(is))
	res.deltaBytes = sentAndReceived(is) - bytes0
	return res
}

// sentAndReceived is the bytes of every exchange the instances started,
// both ways.
func sentAndReceived(is []*instance) uint64 {
	var n uint64
	for _, in := range is {
		n += in.r.met.bytesSent.Load() + in.r.met.bytesReceived.Load()
	}
	return n
}

func (s scaleResult) log(t testing.TB) {
	t.Helper()
	changes := s.entries / 100
	t.Logf("entries=%d converge=%v (cpu %v) full_state=%dB | 1%% changed (%d): %dB exchanged = %.2f%% of full state, %.1fB per change per peer, converged in %v, cpu %v per 1,000 changes per peer, heap %.0fB per entry (3 instances)",
		s.entries, s.converge.Round(time.Millisecond), s.convergeCPU.Round(time.Millisecond), s.fullBytes, changes, s.deltaBytes,
		100*float64(s.deltaBytes)/float64(s.fullBytes), float64(s.deltaBytes)/float64(changes)/2, s.deltaConverge.Round(time.Millisecond), s.cpuPer1k.Round(time.Microsecond), s.heapPerEntry/3)
}

func TestScaleConvergence(t *testing.T) {
	sizes := []int{10_000, 100_000}
	if testing.Short() || raceEnabled {
		sizes = sizes[:1]
	}
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			res := runScale(t, n)
			res.log(t)
			// The 5 s bound holds on a machine that runs this test alone; on
			// an oversubscribed one (load above its cores, or -race) it is
			// reported, and only a loose bound is asserted.
			limit := 5 * time.Second
			if load := loadAverage(); raceEnabled || load > float64(runtime.NumCPU()) {
				t.Logf("machine loaded (load %.1f on %d cores, race %v): the 5s bound is not asserted", load, runtime.NumCPU(), raceEnabled)
				limit = 60 * time.Second
			}
			if res.converge > limit {
				t.Errorf("%d entries converged in %v, want < %v", n, res.converge, limit)
			}
			if float64(res.deltaBytes) > 0.20*float64(res.fullBytes) {
				t.Errorf("1%% changes cost %d bytes, more than 20%% of a full transfer (%d)", res.deltaBytes, res.fullBytes)
			}
		})
	}
}

// BenchmarkScale measures convergence at 1M entries too:
//
//	go test -run XXX -bench Scale -benchtime 1x ./internal/replica/
func BenchmarkScale(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				res := runScale(b, n)
				res.log(b)
				b.ReportMetric(res.converge.Seconds(), "converge-s")
				b.ReportMetric(float64(res.deltaBytes)/float64(res.fullBytes)*100, "delta-%")
			}
		})
	}
}

// waitAcked waits until every instance knows that each of its peers has
// its whole summary.
func waitAcked(t testing.TB, is []*instance) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, in := range is {
		for {
			sum := in.r.Summary()
			ok := true
			in.r.peersMu.Lock()
			for _, p := range in.r.peers {
				ok = ok && p.acked.Covers(sum)
			}
			in.r.peersMu.Unlock()
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: peers' acknowledgements do not settle", in.name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// loadAverage is the one-minute load average (0 if unknown).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	fmt.Sscanf(string(b), "%f", &l)
	return l
}
