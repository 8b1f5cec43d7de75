package event

import (
	"sync"
	"testing"
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
	var mu sync.Mutex
	seen := make(map[ID]bool)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			ids := make([]ID, 5000)
			for i := range ids {
				ids[i] = NewID()
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if seen[id] {
					t.Errorf("duplicate id %s", id)
				}
				seen[id] = true
			}
		})
	}
	wg.Wait()
	if n := testing.AllocsPerRun(100, func() { NewIDAt(wall) }); n != 0 {
		t.Errorf("NewIDAt allocates %.1f times", n)
	}
}
