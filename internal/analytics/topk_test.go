package analytics

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// topkStreams are key streams that stress a top-K summary differently:
// skewed, uniform over more keys than it holds, every key new, and runs
// of one key between distinct ones.
func topkStreams(n int, seed uint64) map[string][]string {
	r := rand.New(rand.NewPCG(seed, 2))
	zipf := rand.NewZipf(r, 1.2, 1, 5000)
	out := map[string][]string{}
	for i := range n {
		out["zipf"] = append(out["zipf"], fmt.Sprint("z", zipf.Uint64()))
		out["uniform"] = append(out["uniform"], fmt.Sprint("u", r.IntN(200)))
		out["distinct"] = append(out["distinct"], fmt.Sprint("d", i))
		k := fmt.Sprint("r", i)
		if i%3 != 0 {
			k = fmt.Sprint("hot", i/50%4)
		}
		out["runs"] = append(out["runs"], k)
	}
	return out
}

// checkSpaceSaving checks the stream-summary's structure (buckets in
// strictly ascending count order, none empty, each entry in the bucket of
// its count, the counts summing to the events added) and the Space-Saving
// guarantees against the exact counts.
func checkSpaceSaving(t *testing.T, name string, s *spaceSaving, exact map[string]int64) {
	t.Helper()
	var sum int64
	seen := 0
	prev := int64(0)
	for b := s.minB; b >= 0; b = s.bks[b].next {
		bk := s.bks[b]
		if bk.count <= prev {
			t.Fatalf("%s: bucket count %d after %d", name, bk.count, prev)
		}
		prev = bk.count
		if bk.head < 0 {
			t.Fatalf("%s: empty bucket of count %d", name, bk.count)
		}
		for i := bk.head; i >= 0; i = s.ents[i].next {
			e := s.ents[i]
			if e.bucket != b || e.count != bk.count {
				t.Fatalf("%s: %q count %d in bucket %d of count %d", name, e.key, e.count, b, bk.count)
			}
			if j, ok := s.byKey[e.key]; !ok || j != i {
				t.Fatalf("%s: %q at %d, indexed at %d (%v)", name, e.key, i, j, ok)
			}
			sum += e.count
			seen++
		}
	}
	if seen != len(s.ents) || seen != len(s.byKey) || seen > s.cap {
		t.Fatalf("%s: %d entries in buckets, %d stored, %d indexed, cap %d", name, seen, len(s.ents), len(s.byKey), s.cap)
	}
	if sum != s.n {
		t.Fatalf("%s: counts sum to %d, want the %d events added", name, sum, s.n)
	}
	for k, n := range exact {
		c, ok := s.get(k)
		switch {
		case !ok && n > s.min():
			t.Fatalf("%s: %q (%d times) not monitored, min %d", name, k, n, s.min())
		case ok && (c.count < n || c.count-c.err > n):
			t.Fatalf("%s: %q count %d error %d, true %d", name, k, c.count, c.err, n)
		}
	}
}

// TestSpaceSavingStream checks the summary after every step of each
// stream, and again after a reset and refill.
func TestSpaceSavingStream(t *testing.T) {
	for name, keys := range topkStreams(3000, 1) {
		s := newSpaceSaving(32)
		for round := range 2 {
			exact := map[string]int64{}
			for i, k := range keys {
				s.add(k, 1)
				exact[k]++
				if i%97 == 0 || i == len(keys)-1 {
					checkSpaceSaving(t, fmt.Sprintf("%s round %d after %d", name, round, i+1), s, exact)
				}
			}
			s.reset()
		}
	}
}

// TestPathSummaryMerge merges a minute of second summaries and checks the
// merged summary against the exact counts of the minute: every count and
// byte total bounds its key's true values (count from above within its
// error, bytes from below), no unmonitored key occurred more often than
// the summary's bound, and that bound stays within N/cap.
func TestPathSummaryMerge(t *testing.T) {
	const capacity = 64
	for name, keys := range topkStreams(60*500, 3) {
		m := newPathSummary(capacity)
		exact := map[string]int64{}
		exactBytes := map[string]int64{}
		s := newSpaceSaving(capacity)
		for sec := range 60 {
			s.reset()
			for i, k := range keys[sec*500 : (sec+1)*500] {
				b := int64(i % 7)
				s.add(k, b)
				exact[k]++
				exactBytes[k] += b
			}
			m.merge(s)
			if len(m.ents) > capacity || len(m.byKey) != len(m.ents) {
				t.Fatalf("%s second %d: %d entries, %d indexed, cap %d", name, sec, len(m.ents), len(m.byKey), capacity)
			}
			n := int64((sec + 1) * 500)
			for k, want := range exact {
				c, ok := m.get(k)
				switch {
				case !ok && want > m.min():
					t.Fatalf("%s second %d: %q (%d times) not monitored, bound %d", name, sec, k, want, m.min())
				case ok && (c.count < want || c.count-c.err > want):
					t.Fatalf("%s second %d: %q count %d error %d, true %d", name, sec, k, c.count, c.err, want)
				case ok && c.bytes > exactBytes[k]:
					t.Fatalf("%s second %d: %q bytes %d, true %d", name, sec, k, c.bytes, exactBytes[k])
				}
			}
			if m.min()*capacity > n {
				t.Errorf("%s second %d: bound %d above N/cap = %d/%d", name, sec, m.min(), n, capacity)
			}
		}
		t.Logf("%s: bound %d after %d events (N/cap %d)", name, m.min(), len(keys), len(keys)/capacity)
	}
}

// TestSpaceSavingAllocs pins the per-event path: counting known and new
// keys in a summary that was reset allocates nothing.
func TestSpaceSavingAllocs(t *testing.T) {
	keys := topkStreams(4096, 5)["zipf"]
	s := newSpaceSaving(256)
	for _, k := range keys {
		s.add(k, 1)
	}
	allocs := testing.AllocsPerRun(20, func() {
		s.reset()
		for _, k := range keys {
			s.add(k, 1)
		}
	})
	if allocs != 0 {
		t.Errorf("refill after reset: %v allocs, want 0", allocs)
	}
}

// TestOpenSecondsInLongAnswers: events of seconds not yet closed (so not
// yet merged into their minute) count in windows longer than the second
// panes cover and in the open minute and hour of a series.
func TestOpenSecondsInLongAnswers(t *testing.T) {
	now := time.Now()
	e := newTestEngine(t, Config{}, Options{Now: func() time.Time { return now }})
	const n = 25
	for i := range n {
		ev := fsEvent("fs.write", fmt.Sprintf("/srv/data/f%d", i%3), "rsync", 7, 100, now.Add(-time.Duration(i%2)*time.Second))
		ev.Seq = uint64(i + 1)
		e.Apply(ev)
	}
	top, err := e.Top(nil, "comm", 5*time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if top.Total != n || len(top.Items) != 1 || top.Items[0].Count != n {
		t.Errorf("top by comm over 5m: total %d, items %+v; want %d events of rsync", top.Total, top.Items, n)
	}
	paths, err := e.Top(nil, "path", 5*time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, it := range paths.Items {
		sum += it.Count
	}
	if sum != n {
		t.Errorf("top paths over 5m sum to %d, want %d", sum, n)
	}
	for _, res := range []int{res1m, res1h} {
		r, err := e.Series(nil, "events", "type", res, now.Unix()-7200, now.Unix()+3600, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got int64
		for _, s := range r.Series {
			got += sum64(s.Values)
		}
		if got != n {
			t.Errorf("%s series: %d events, want %d", resNames[res], got, n)
		}
	}
}

func sum64(vs []int64) (n int64) {
	for _, v := range vs {
		n += v
	}
	return n
}
