package propagate

import (
	"math/rand/v2"
	"testing"
)

// TestKeyTableMatchesMap runs random puts, gets and deletes on a keyTable
// and a Go map; keys come from a small space (so that probes collide,
// wrap around and get deleted mid-chain) and must agree throughout.
func TestKeyTableMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tab := newKeyTable()
	ref := map[dedupKey]uint64{}
	key := func() dedupKey {
		// Eight homes at the end of the 1024 slots (at most 480 keys:
		// it never grows): long chains that wrap past the end.
		return dedupKey{uint64(1023 - r.IntN(8)), uint64(r.IntN(60)) + 1}
	}
	for i := range 50000 {
		k := key()
		switch r.IntN(3) {
		case 0:
			tab.put(k, uint64(i))
			ref[k] = uint64(i)
		case 1:
			tab.del(k)
			delete(ref, k)
		}
		if got, ok := tab.get(k); ok != (ref[k] != 0 || hasKey(ref, k)) || got != ref[k] {
			t.Fatalf("op %d: get(%v) = %d, %v; map has %d", i, k, got, ok, ref[k])
		}
		if tab.len() != len(ref) {
			t.Fatalf("op %d: len %d, map %d", i, tab.len(), len(ref))
		}
	}
	for k, v := range ref {
		if got, ok := tab.get(k); !ok || got != v {
			t.Fatalf("get(%v) = %d, %v; want %d", k, got, ok, v)
		}
	}
}

func hasKey(m map[dedupKey]uint64, k dedupKey) bool { _, ok := m[k]; return ok }
