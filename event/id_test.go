package event

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestIDsMonotonic: IDs increase within one millisecond and with time,
// and across goroutines there are no duplicates; their time part is the
// millisecond asked for; making one allocates nothing.
func TestIDsMonotonic(t *testing.T) {
	const wall = int64(1_800_000_000_000) * 1e6 // ns
	prev := NewIDAt(wall)
	if got := prev.Time().UnixMilli(); got != wall/1e6 {
		t.Fatalf("time part %d, want %d", got, wall/1e6)
	}
	for i, w := range []int64{wall, wall + 1, wall + 999_999, wall + 1e6, wall + 1e6, wall + 5e9} {
		id := NewIDAt(w)
		if id.Time().UnixMilli() != w/1e6 {
			t.Fatalf("step %d: time part %d, want %d", i, id.Time().UnixMilli(), w/1e6)
		}
		if id.String() <= prev.String() {
			t.Fatalf("step %d: %s after %s", i, id, prev)
		}
		prev = id
	}
	checkDistinct(t, func(int) []ID {
		ids := make([]ID, 5000)
		for i := range ids {
			ids[i] = NewID()
		}
		return ids
	})
	if n := testing.AllocsPerRun(100, func() { NewIDAt(wall) }); n != 0 {
		t.Errorf("NewIDAt allocates %.1f times", n)
	}
}

// checkDistinct runs gen on 4 goroutines at once (g is the goroutine's
// number) and fails the test if any two of the IDs they made are equal.
func checkDistinct(t *testing.T, gen func(g int) []ID) {
	t.Helper()
	got := make([][]ID, 4)
	var wg sync.WaitGroup
	for g := range got {
		wg.Go(func() { got[g] = gen(g) })
	}
	wg.Wait()
	seen := make(map[ID]bool)
	for _, ids := range got {
		for _, id := range ids {
			if seen[id] {
				t.Errorf("duplicate id %s", id)
			}
			seen[id] = true
		}
	}
}

// TestIDsRandom: the 80 bits after the time are drawn afresh in each
// millisecond and grow by random steps within one, so neighbouring IDs do
// not give each other away.
func TestIDsRandom(t *testing.T) {
	const wall = int64(1_950_000_000_000) * 1e6 // ns
	rnd := func(id ID) (hi uint16, lo uint64) {
		return uint16(id[6])<<8 | uint16(id[7]), binary.BigEndian.Uint64(id[8:])
	}
	a, b := NewIDAt(wall), NewIDAt(wall+1e6)
	ah, al := rnd(a)
	if ah == 0 && al == 0 {
		t.Fatalf("random part of %s is zero", a)
	}
	if _, bl := rnd(b); al == bl {
		t.Fatalf("two milliseconds drew the same random part: %s, %s", a, b)
	}
	steps := 0
	prev := b
	for range 8 {
		id := NewIDAt(wall + 1e6)
		_, pl := rnd(prev)
		if _, l := rnd(id); l-pl > 1 {
			steps++
		}
		prev = id
	}
	if steps == 0 {
		t.Fatalf("IDs within one millisecond grew by 1 each time: no random step")
	}
}

// BenchmarkNewIDAt: one ID within the current millisecond, as a batch's
// publish makes them.
func BenchmarkNewIDAt(b *testing.B) {
	b.ReportAllocs()
	const wall = int64(1_950_000_000_000) * 1e6
	for b.Loop() {
		NewIDAt(wall)
	}
}

// TestNewIDsAt: a run of IDs made at once carries the millisecond asked
// for, increases, follows the IDs made before it and precedes those made
// after, and is unique across goroutines making runs and single IDs at
// the same time.
func TestNewIDsAt(t *testing.T) {
	const wall = int64(1_960_000_000_000) * 1e6 // ns
	before := NewIDAt(wall)
	ids := make([]ID, 300)
	NewIDsAt(wall+5, ids)
	after := NewIDAt(wall + 7)
	prev := before
	for i, id := range append(ids, after) {
		if id.Time().UnixMilli() != wall/1e6 {
			t.Fatalf("id %d: time part %d, want %d", i, id.Time().UnixMilli(), wall/1e6)
		}
		if id.String() <= prev.String() {
			t.Fatalf("id %d: %s after %s", i, id, prev)
		}
		prev = id
	}
	NewIDsAt(wall, nil) // nothing to fill: no effect, no panic
	checkDistinct(t, func(g int) []ID {
		got := make([]ID, 0, 4000)
		for range 1000 {
			if g%2 == 0 {
				got = append(got, NewID())
				continue
			}
			var run [4]ID
			NewIDsAt(time.Now().UnixNano(), run[:])
			got = append(got, run[:]...)
		}
		return got
	})
	if n := testing.AllocsPerRun(100, func() { NewIDsAt(wall, ids[:64]) }); n != 0 {
		t.Errorf("NewIDsAt allocates %.1f times", n)
	}
}

// BenchmarkIDsContended: 4 goroutines on 2 CPUs make IDs, one lock per ID
// (NewIDAt) or per run of 64 (NewIDsAt), as concurrent publishers of
// batches do. ns/op is per ID.
func BenchmarkIDsContended(b *testing.B) {
	const wall = int64(1_950_000_000_000) * 1e6
	for _, run := range []int{1, 64} {
		b.Run(fmt.Sprintf("run=%d", run), func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(2)
			b.RunParallel(func(pb *testing.PB) {
				ids := make([]ID, run)
				for k := 0; pb.Next(); k++ {
					if run == 1 {
						ids[0] = NewIDAt(wall)
						continue
					}
					if k%run == 0 {
						NewIDsAt(wall, ids)
					}
				}
			})
		})
	}
}
