package bridge

import (
	"hash/maphash"
	"time"

	"github.com/semprop/semprop/internal/capture"
)

// lru remembers the content hashes of recent ops so an exact repeat (the
// same op delivered twice) within the window is caught. It is a fixed ring:
// the oldest hash is forgotten first. Not safe for concurrent use.
type lru struct {
	seed  maphash.Seed
	slots []lruSlot
	next  int
	index map[uint64]int
}

type lruSlot struct {
	h     uint64
	until time.Time
}

func newLRU(size int) *lru {
	if size <= 0 {
		return nil
	}
	return &lru{seed: maphash.MakeSeed(), slots: make([]lruSlot, size), index: make(map[uint64]int, size)}
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
	if i, ok := l.index[h]; ok && l.slots[i].h == h {
		if !now.After(l.slots[i].until) {
			return true
		}
		l.slots[i].until = now.Add(window)
		return false
	}
	s := &l.slots[l.next]
	if j, ok := l.index[s.h]; ok && j == l.next {
		delete(l.index, s.h)
	}
	s.h, s.until = h, now.Add(window)
	l.index[h] = l.next
	l.next = (l.next + 1) % len(l.slots)
	return false
}
