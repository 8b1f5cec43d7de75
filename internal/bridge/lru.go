package bridge

import (
	"hash/maphash"
	"time"

	"github.com/semprop/semprop/internal/capture"
)

// lru remembers the content hashes of recent ops so an exact repeat (the
// same op delivered twice) within the window is caught. It is a
// set-associative cache, as a CPU's is: a hash goes to one set of lruWays
// slots picked by its low bits, and replaces the slot there that expires
// first (the least recently seen: every slot gets the same window). A
// lookup reads one set and allocates nothing; a map of hashes plus a ring
// in insertion order cost a lookup, a delete and an insert per op, in a
// table that churns all the time. There are twice as many slots as the
// size asked for, so that a set overflows (and forgets a hash early) only
// when far more than its share of recent ops land in it. Not safe for
// concurrent use.
type lru struct {
	seed maphash.Seed
	sets [][lruWays]lruSlot
	mask uint64
}

const lruWays = 8

// lruSlot is one remembered hash; until is 0 for an empty slot.
type lruSlot struct {
	h     uint64
	until int64 // ns since the epoch
}

// newLRU returns a filter for size recent ops; nil when size <= 0.
func newLRU(size int) *lru {
	if size <= 0 {
		return nil
	}
	n := 1
	for n*lruWays < 2*size {
		n *= 2
	}
	return &lru{seed: maphash.MakeSeed(), sets: make([][lruWays]lruSlot, n), mask: uint64(n - 1)}
}

// hash is the op's content: boundary, kind, paths, inode, size, actor
// (process, not thread: one logical op may be reported from two threads of
// the caller, e.g. at close and at release) and the write's range —
// everything but the observation time and the thread.
func (l *lru) hash(op *capture.Op) uint64 {
	var h maphash.Hash
	h.SetSeed(l.seed)
	var b [8 * 9]byte
	put := func(i int, v uint64) {
		for j := range 8 {
			b[i*8+j] = byte(v >> (8 * j))
		}
	}
	rescan := uint64(0)
	if op.Rescan {
		rescan = 1
	}
	put(0, uint64(op.Boundary)|uint64(op.Kind)<<8|rescan<<16|uint64(op.Known)<<32)
	put(1, op.Inode)
	put(2, uint64(op.Size))
	put(3, uint64(uint32(op.PID))|uint64(op.UID)<<32)
	put(4, uint64(op.Bytes))
	put(5, uint64(op.Offset))
	put(6, uint64(op.Length))
	put(7, uint64(op.Mode)|uint64(op.GID)<<32)
	put(8, uint64(op.Count))
	h.Write(b[:])
	h.WriteString(op.Path)
	h.WriteByte(0)
	h.WriteString(op.OldPath)
	h.WriteByte(0)
	h.WriteString(op.Target)
	return h.Sum64()
}

// seen reports whether an op with the same content was seen less than
// window ago, and records op. A nil lru sees nothing.
func (l *lru) seen(op *capture.Op, now time.Time, window time.Duration) bool {
	if l == nil {
		return false
	}
	h := l.hash(op)
	t := now.UnixNano()
	set := &l.sets[h&l.mask]
	victim := 0
	for i := range set {
		s := &set[i]
		if s.until != 0 && s.h == h {
			if t <= s.until {
				return true
			}
			s.until = t + int64(window)
			return false
		}
		if s.until < set[victim].until {
			victim = i
		}
	}
	set[victim] = lruSlot{h: h, until: t + int64(window)}
	return false
}
