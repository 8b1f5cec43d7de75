package propagate

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
)

// DefaultDedupWindow is the idempotent-ingest window the daemon uses when
// its configuration does not say otherwise.
const DefaultDedupWindow = 10 * time.Minute

// DefaultDedupMax bounds the events remembered by the idempotent-ingest
// window when DedupOptions.Max is 0: about 80 bytes each (a ring entry and
// a map entry), some 20 MiB when full.
const DefaultDedupMax = 1 << 18

// DedupOptions configure idempotent ingest: an event published again with
// the same source and id (the producer's CloudEvents id: SourceID when set,
// else ID) while the first is still in the window is not stored again; it
// is answered with the first one's seq.
type DedupOptions struct {
	// Window is how long a sequenced event is remembered; 0 disables
	// idempotent ingest. DefaultDedupWindow is the daemon's default.
	Window time.Duration
	// Max bounds the remembered events (the oldest are forgotten first,
	// even inside Window); 0 means DefaultDedupMax.
	Max int
}

// dedupKey identifies an event by source and producer id.
type dedupKey [2]uint64

func keyOf(ev *event.Event) dedupKey {
	seed := xxh3.HashString(ev.Source)
	var h xxh3.Uint128
	if ev.SourceID != "" {
		h = xxh3.HashString128Seed(ev.SourceID, seed^1)
	} else {
		h = xxh3.Hash128Seed(ev.ID[:], seed)
	}
	if h.Hi == 0 && h.Lo == 0 {
		h.Lo = 1 // the zero key marks an empty slot
	}
	return dedupKey{h.Hi, h.Lo}
}

type dedupEntry struct {
	key dedupKey
	seq uint64
	at  int64 // unix nanoseconds it was sequenced (its HLC wall when rebuilt)
}

// dedup is the idempotent-ingest window: the sequenced events of the last
// Window (at most Max of them), by key. It is safe for concurrent use.
type dedup struct {
	window int64
	max    int

	mu    sync.Mutex   // guards the fields below
	seqs  *keyTable    // the seq of each remembered key; pendingBit|index while reserved
	ring  []dedupEntry // in sequencing order from head
	head  int
	n     int
	dupes uint64 // publishes answered from the window
}

func newDedup(o DedupOptions) *dedup {
	if o.Window <= 0 {
		return nil
	}
	if o.Max <= 0 {
		o.Max = DefaultDedupMax
	}
	return &dedup{window: int64(o.Window), max: o.Max, seqs: newKeyTable()}
}

// addLocked remembers k as sequenced at seq, at time now.
func (d *dedup) addLocked(k dedupKey, seq uint64, now int64) {
	d.expireLocked(now)
	if d.n == d.max {
		d.popLocked()
	}
	if d.n == len(d.ring) {
		d.growLocked()
	}
	d.ring[(d.head+d.n)%len(d.ring)] = dedupEntry{key: k, seq: seq, at: now}
	d.n++
	d.seqs.put(k, seq)
}

func (d *dedup) growLocked() {
	size := min(max(2*len(d.ring), 64), d.max)
	ring := make([]dedupEntry, size)
	for i := range d.n {
		ring[i] = d.ring[(d.head+i)%len(d.ring)]
	}
	d.ring, d.head = ring, 0
}

func (d *dedup) popLocked() {
	e := d.ring[d.head]
	if v, ok := d.seqs.get(e.key); ok && v == e.seq {
		d.seqs.del(e.key)
	}
	d.ring[d.head] = dedupEntry{}
	d.head = (d.head + 1) % len(d.ring)
	d.n--
}

// expireLocked forgets what was sequenced before now - window.
func (d *dedup) expireLocked(now int64) {
	for d.n > 0 && d.ring[d.head].at < now-d.window {
		d.popLocked()
	}
}

// pendingBit marks a key in seqs as the fresh event at index value &^
// pendingBit of the batch being sequenced (between reserve and record).
const pendingBit = 1 << 63

// reserve is filter for the local sequencer, which holds the order from
// reserve to record (or release): fresh keys enter the window at once, as
// pending, so that copies inside the batch find them without a map of
// their own. It returns the fresh events (evs itself when there is no
// duplicate) and dupOf as filter does.
func (d *dedup) reserve(evs []*event.Event) (fresh []*event.Event, dupOf []int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dupes := 0
	for i, ev := range evs {
		k := keyOf(ev)
		v, ok := d.seqs.get(k)
		if !ok {
			d.seqs.put(k, pendingBit|uint64(i))
			if fresh != nil {
				fresh = append(fresh, ev)
			}
			continue
		}
		if fresh == nil {
			fresh = make([]*event.Event, i, len(evs))
			copy(fresh, evs[:i])
		}
		if v&pendingBit != 0 {
			dupOf = markDup(dupOf, len(evs), i, int(v&^pendingBit))
		} else {
			ev.Seq = v
		}
		dupes++
	}
	if fresh == nil {
		return evs, nil
	}
	d.dupes += uint64(dupes)
	return fresh, dupOf
}

// release forgets the pending keys of fresh events that were not
// sequenced after all.
func (d *dedup) release(fresh []*event.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ev := range fresh {
		k := keyOf(ev)
		if v, ok := d.seqs.get(k); ok && v&pendingBit != 0 {
			d.seqs.del(k)
		}
	}
}

func markDup(dupOf []int, n, i, first int) []int {
	if dupOf == nil {
		dupOf = make([]int, n)
		for j := range dupOf {
			dupOf[j] = -1
		}
	}
	dupOf[i] = first
	return dupOf
}

// filter sets Seq on the events of evs whose first copy is in the window
// and returns the others (evs itself when there is no duplicate) and, for
// copies of an earlier event of evs itself, that event's index in dupOf
// (nil when there is none; -1 elsewhere): resolve gives them its seq once
// it has one. Unlike reserve it leaves the window as it is, for callers
// that do not hold the sequencer's order: copies published at once by two
// callers both pass.
func (d *dedup) filter(evs []*event.Event) (fresh []*event.Event, dupOf []int) {
	keys := make([]dedupKey, len(evs))
	firstOf := make(map[dedupKey]int, len(evs))
	d.mu.Lock()
	defer d.mu.Unlock()
	dupes := 0
	for i, ev := range evs {
		k := keyOf(ev)
		keys[i] = k
		v, inWindow := d.seqs.get(k)
		inWindow = inWindow && v&pendingBit == 0
		first, inBatch := firstOf[k]
		if !inWindow && !inBatch {
			firstOf[k] = i
			if fresh != nil {
				fresh = append(fresh, ev)
			}
			continue
		}
		if fresh == nil {
			fresh = make([]*event.Event, i, len(evs))
			copy(fresh, evs[:i])
		}
		if inWindow {
			ev.Seq = v
		} else {
			dupOf = markDup(dupOf, len(evs), i, first)
		}
		dupes++
	}
	if fresh == nil {
		return evs, nil
	}
	d.dupes += uint64(dupes)
	return fresh, dupOf
}

// resolve gives the copies of an earlier event of evs (dupOf[i] >= 0) the
// seq of their first copy, once that one is sequenced.
func resolve(evs []*event.Event, dupOf []int) {
	for i, f := range dupOf {
		if f >= 0 {
			evs[i].Seq = evs[f].Seq
		}
	}
}

// record remembers sequenced events.
func (d *dedup) record(evs []*event.Event) {
	now := time.Now().UnixNano()
	d.mu.Lock()
	for _, ev := range evs {
		d.addLocked(keyOf(ev), ev.Seq, now)
	}
	d.mu.Unlock()
}

var _ Window = (*dedup)(nil)

// Key implements Window.
func (d *dedup) Key(ev *event.Event) [2]uint64 { return keyOf(ev) }

// Lookup implements Window: the seq of a sequenced event (not one a local
// batch holds pending).
func (d *dedup) Lookup(key [2]uint64) (uint64, bool) {
	d.mu.Lock()
	v, ok := d.seqs.get(key)
	d.mu.Unlock()
	return v, ok && v&pendingBit == 0
}

// Duplicates implements Window.
func (d *dedup) Duplicates(n int) {
	d.mu.Lock()
	d.dupes += uint64(n)
	d.mu.Unlock()
}

// stats returns how many events the window remembers and how many
// publishes it answered.
func (d *dedup) stats() (remembered int, duplicates uint64) {
	if d == nil {
		return 0, 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n, d.dupes
}

// rebuild fills the window from the journal's durable events of the last
// window (at most max of them), so that it survives a restart. An event's
// age is taken from its HLC wall time.
func (d *dedup) rebuild(j *journal.Journal) error {
	last := j.DurableSeq()
	if last == 0 {
		return nil
	}
	first := max(j.FirstSeq(), 1)
	if last >= uint64(d.max) {
		first = max(first, last-uint64(d.max)+1)
	}
	now := time.Now().UnixNano()
	cutoff := now - d.window
	// The first event of the window, by binary search on the HLC wall
	// times (non-decreasing in seq up to clock skew between publishers).
	lo, hi := first, last+1
	for lo < hi {
		mid := lo + (hi-lo)/2
		wall, seq, err := wallAt(j, mid)
		if err != nil {
			return err
		}
		if seq == 0 { // nothing at or after mid
			hi = mid
			continue
		}
		if wall < cutoff {
			lo = min(seq+1, hi)
		} else {
			hi = mid
		}
	}
	r, err := j.Reader(lo)
	if err != nil {
		var te *journal.TruncatedError
		if !errors.As(err, &te) {
			return fmt.Errorf("propagate: dedup rebuild: %w", err)
		}
		if r, err = j.Reader(te.First); err != nil {
			return fmt.Errorf("propagate: dedup rebuild: %w", err)
		}
	}
	defer r.Close()
	var ev event.Event
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		seq, payload, ok, err := r.TryNext()
		if err != nil {
			if errors.Is(err, journal.ErrTruncated) {
				continue
			}
			return fmt.Errorf("propagate: dedup rebuild: %w", err)
		}
		if !ok || seq > last {
			return nil
		}
		if err := decodeRecord(seq, payload, &ev); err != nil {
			continue // a record of something else: not an event to remember
		}
		if ev.HLC.Wall < cutoff {
			continue
		}
		d.addLocked(keyOf(&ev), seq, min(ev.HLC.Wall, now))
	}
}

// wallAt returns the HLC wall time and seq of the first durable event at or
// after seq (seq 0: none).
func wallAt(j *journal.Journal, seq uint64) (int64, uint64, error) {
	r, err := j.Reader(seq)
	if err != nil {
		var te *journal.TruncatedError
		if !errors.As(err, &te) {
			return 0, 0, fmt.Errorf("propagate: dedup rebuild: %w", err)
		}
		if r, err = j.Reader(te.First); err != nil {
			return 0, 0, fmt.Errorf("propagate: dedup rebuild: %w", err)
		}
	}
	defer r.Close()
	var ev event.Event
	for {
		s, payload, ok, err := r.TryNext()
		if err != nil {
			if errors.Is(err, journal.ErrTruncated) {
				continue
			}
			return 0, 0, fmt.Errorf("propagate: dedup rebuild: %w", err)
		}
		if !ok {
			return 0, 0, nil
		}
		if decodeRecord(s, payload, &ev) == nil {
			return ev.HLC.Wall, s, nil
		}
	}
}
