package analytics

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

// replay is a deterministic stream for accuracy tests: Zipf-distributed
// paths (a few hot, a long tail of unique ones), processes and users.
func replay(n int, perSec int, seed uint64) []event.Event {
	r := rand.New(rand.NewPCG(seed, 1))
	paths := rand.NewZipf(r, 1.1, 1, 1<<20)
	comms := rand.NewZipf(r, 1.3, 1, 200)
	types := []string{"fs.write", "fs.create", "fs.delete", "fs.rename", "fs.mkdir", "app.upload"}
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	evs := make([]event.Event, n)
	for i := range evs {
		ev := &evs[i]
		ev.Seq = uint64(i + 1)
		ev.Type = types[r.IntN(len(types))]
		ev.Time = start.Add(time.Duration(i) * time.Second / time.Duration(perSec))
		p := paths.Uint64()
		ev.Subject = fmt.Sprintf("/d%d/s%d/f%d", p%7, p%13, p)
		ev.Context.Comm = fmt.Sprintf("proc%d", comms.Uint64())
		if i%17 != 0 {
			ev.Context.SetUID(uint32(r.IntN(20)))
		}
		if ev.Type == "fs.write" {
			ev.Context.SetBytes(1 + r.Int64N(1<<16))
		}
	}
	return evs
}

type exactAgg struct {
	n, bytes int64
	keys     [nDims + 1]map[string]*cb // + paths
	distinct map[string]bool
	sizes    []float64
}

func exactOf(evs []event.Event, from, to int64, depth int) *exactAgg {
	a := &exactAgg{distinct: map[string]bool{}}
	for i := range a.keys {
		a.keys[i] = map[string]*cb{}
	}
	add := func(d int, k string, b int64) {
		c, ok := a.keys[d][k]
		if !ok {
			c = new(cb)
			a.keys[d][k] = c
		}
		c.count++
		c.bytes += b
	}
	for i := range evs {
		ev := &evs[i]
		s := ev.Time.Unix()
		if s < from || s >= to {
			continue
		}
		b := ev.Context.Bytes
		a.n++
		a.bytes += b
		add(dimType, ev.Type, b)
		add(dimComm, ev.Context.Comm, b)
		uid := unknownKey
		if ev.Context.Has(event.HasUID) {
			uid = fmt.Sprint(ev.Context.UID)
		}
		add(dimUID, uid, b)
		add(dimDir, dirOf(ev.Subject, depth), b)
		add(nDims, ev.Subject, b)
		a.distinct[ev.Subject] = true
		if b > 0 {
			a.sizes = append(a.sizes, float64(b))
		}
	}
	return a
}

// TestAccuracy compares the engine's windows with an exact computation
// over the same replay: counts and bytes exact, distinct paths within 2%,
// and every path above 1% of a window's events in the top list with its
// count within the reported error.
func TestAccuracy(t *testing.T) {
	const perSec = 2000
	n := 600 * perSec / 2 // 5 minutes
	if raceEnabled {
		n /= 10 // one goroutine: the race detector only slows it down
	}
	evs := replay(n, perSec, 7)
	e := newTestEngine(t, Config{}, Options{Now: func() time.Time { return evs[len(evs)-1].Time }})
	for i := range evs {
		e.Apply(&evs[i])
	}
	maxSec := evs[len(evs)-1].Time.Unix()
	for _, w := range []int64{1, 10, 60, 120, 300} {
		from := maxSec - w + 1
		if w > secWindowMax {
			from = minuteOf(maxSec) - (w+59)/60*60 + 60
		}
		want := exactOf(evs, from, maxSec+1, 2)
		for d := range nDims {
			got, err := e.Top(nil, dimNames[d], time.Duration(w)*time.Second, 100000)
			if err != nil {
				t.Fatal(err)
			}
			if got.Total != want.n || got.TotalBytes != want.bytes {
				t.Errorf("w=%d: totals %d/%d, want %d/%d", w, got.Total, got.TotalBytes, want.n, want.bytes)
			}
			if len(got.Items) != len(want.keys[d]) {
				t.Errorf("w=%d by %s: %d keys, want %d", w, dimNames[d], len(got.Items), len(want.keys[d]))
			}
			for _, it := range got.Items {
				c := want.keys[d][it.Key]
				if c == nil || c.count != it.Count || c.bytes != it.Bytes {
					t.Errorf("w=%d by %s: %q = %d/%d, want %v", w, dimNames[d], it.Key, it.Count, it.Bytes, c)
				}
			}
		}
		sum, err := e.WindowSummary(nil, time.Duration(w)*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		exact := float64(len(want.distinct))
		relErr := math.Abs(float64(sum.DistinctPaths)-exact) / exact
		if relErr > 0.02 {
			t.Errorf("w=%d: distinct paths %d, want %v within 2%% (off %.2f%%)", w, sum.DistinctPaths, exact, 100*relErr)
		}
		slices.Sort(want.sizes)
		for _, q := range []struct {
			q   float64
			got float64
		}{{0.5, sum.WriteP50}, {0.9, sum.WriteP90}, {0.99, sum.WriteP99}} {
			exact := want.sizes[int(q.q*float64(len(want.sizes)-1))]
			if math.Abs(q.got-exact) > 0.01*exact+1 {
				t.Errorf("w=%d: write size p%g = %.0f, want %.0f within 1%%", w, 100*q.q, q.got, exact)
			}
		}
		top, err := e.Top(nil, "path", time.Duration(w)*time.Second, 100)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]TopItem{}
		for _, it := range top.Items {
			got[it.Key] = it
		}
		heavy, exactCounts := 0, 0
		for k, c := range want.keys[nDims] {
			if c.count*100 <= want.n {
				continue
			}
			heavy++
			it, ok := got[k]
			if !ok {
				t.Errorf("w=%d: path %q (%d of %d events) missing from the top list", w, k, c.count, want.n)
				continue
			}
			if it.Count < c.count || it.Count-it.Error > c.count {
				t.Errorf("w=%d: path %q count %d (error %d), true %d", w, k, it.Count, it.Error, c.count)
			}
			if it.Count == c.count && it.Error == 0 && it.Bytes == c.bytes {
				exactCounts++
			}
		}
		if exactCounts != heavy {
			t.Errorf("w=%d: %d of %d paths above 1%% have exact counts and bytes", w, exactCounts, heavy)
		}
		t.Logf("w=%3ds: %7d events, %6d distinct paths (HLL %d, %+.2f%%), %d paths above 1%% exact; write p50 %.0f p99 %.0f",
			w, want.n, len(want.distinct), sum.DistinctPaths, 100*(float64(sum.DistinctPaths)-exact)/exact, heavy, sum.WriteP50, sum.WriteP99)
	}
}
