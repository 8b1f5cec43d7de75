package propagate

// keyTable maps dedup keys to values: open addressing with linear probing,
// at most 60% full, and backward-shift deletion, so that the constant
// inserts and deletes of a sliding window never leave tombstones that
// lengthen probes (as they do in a Go map, where a miss, the common case
// here, then walks many groups). Keys are uniform hashes: their first
// word is the slot. The zero key is never stored (keyOf avoids it). Not
// safe for concurrent use.
type keyTable struct {
	slots []keySlot
	mask  uint64
	n     int
}

type keySlot struct {
	k dedupKey
	v uint64
}

func newKeyTable() *keyTable {
	return &keyTable{slots: make([]keySlot, 1024), mask: 1023}
}

func (t *keyTable) len() int { return t.n }

// find returns the slot of k, or the empty slot where it would go.
func (t *keyTable) find(k dedupKey) (uint64, bool) {
	for i := k[0] & t.mask; ; i = (i + 1) & t.mask {
		switch t.slots[i].k {
		case k:
			return i, true
		case dedupKey{}:
			return i, false
		}
	}
}

func (t *keyTable) get(k dedupKey) (uint64, bool) {
	i, ok := t.find(k)
	return t.slots[i].v, ok
}

func (t *keyTable) put(k dedupKey, v uint64) {
	i, ok := t.find(k)
	if ok {
		t.slots[i].v = v
		return
	}
	if 5*(t.n+1) > 3*len(t.slots) { // at most 60% full
		t.grow()
		i, _ = t.find(k)
	}
	t.slots[i] = keySlot{k, v}
	t.n++
}

func (t *keyTable) grow() {
	old := t.slots
	t.slots = make([]keySlot, 2*len(old))
	t.mask = uint64(len(t.slots) - 1)
	for _, s := range old {
		if s.k != (dedupKey{}) {
			i, _ := t.find(s.k)
			t.slots[i] = s
		}
	}
}

func (t *keyTable) del(k dedupKey) {
	i, ok := t.find(k)
	if !ok {
		return
	}
	// Shift back the entries after i that probed past it.
	for j := (i + 1) & t.mask; t.slots[j].k != (dedupKey{}); j = (j + 1) & t.mask {
		home := t.slots[j].k[0] & t.mask
		// The entry at j may move to i unless its home lies cyclically
		// in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = keySlot{}
	t.n--
}
