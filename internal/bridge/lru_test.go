package bridge

import (
	"fmt"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/capture"
)

func lruOp(i int) *capture.Op {
	return &capture.Op{Kind: capture.KindWrite, Boundary: boundaryFUSE, Path: fmt.Sprintf("/m/f%d", i), PID: 7}
}

func TestLRURepeatWithinWindow(t *testing.T) {
	l := newLRU(64)
	t0 := time.Unix(1000, 0)
	w := 50 * time.Millisecond
	if l.seen(lruOp(1), t0, w) {
		t.Fatal("first sight reported as a repeat")
	}
	if !l.seen(lruOp(1), t0.Add(w), w) {
		t.Fatal("repeat within the window not caught")
	}
	if l.seen(lruOp(2), t0.Add(w), w) {
		t.Fatal("another op reported as a repeat")
	}
	// Past the window the op is new again, and starts a new window.
	if l.seen(lruOp(1), t0.Add(3*w), w) {
		t.Fatal("op past its window reported as a repeat")
	}
	if !l.seen(lruOp(1), t0.Add(3*w+w/2), w) {
		t.Fatal("repeat in the renewed window not caught")
	}
	// Only the thread differs: the same logical op.
	op := lruOp(1)
	op.TID = 99
	if !l.seen(op, t0.Add(3*w+w/2), w) {
		t.Fatal("repeat from another thread not caught")
	}
	// Any field of the content makes another op.
	op = lruOp(1)
	op.Size = 5
	if l.seen(op, t0.Add(3*w+w/2), w) {
		t.Fatal("op with another size reported as a repeat")
	}
}

// TestLRUCapacity checks that the filter holds recent ops (a quarter of its
// size: with the hash seed random, a full size's worth may overflow a set
// now and then) and forgets the oldest once many more came.
func TestLRUCapacity(t *testing.T) {
	const size = 256
	l := newLRU(size)
	t0 := time.Unix(1000, 0)
	w := time.Hour
	for i := range size / 4 {
		l.seen(lruOp(i), t0.Add(time.Duration(i)), w)
	}
	for i := range size / 4 {
		if !l.seen(lruOp(i), t0.Add(size), w) {
			t.Fatalf("op %d of %d forgotten in a filter of %d", i, size/4, size)
		}
	}
	// Flood it: the first ops go.
	for i := size; i < 100*size; i++ {
		l.seen(lruOp(i), t0.Add(time.Duration(i)), w)
	}
	caught := 0
	for i := range size / 4 {
		if l.seen(lruOp(i), t0.Add(100*size), w) {
			caught++
		}
	}
	if caught != 0 {
		t.Fatalf("%d of %d old ops still caught after %d newer ones", caught, size/4, 99*size)
	}
}

func TestLRUNil(t *testing.T) {
	var l *lru = newLRU(-1)
	if l != nil || l.seen(lruOp(1), time.Now(), time.Second) || l.seen(lruOp(1), time.Now(), time.Second) {
		t.Fatal("a disabled filter reports repeats")
	}
}

func BenchmarkLRUSeen(b *testing.B) {
	l := newLRU(4096)
	ops := make([]*capture.Op, 8192)
	for i := range ops {
		ops[i] = lruOp(i)
	}
	now := time.Unix(1000, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		l.seen(ops[i%len(ops)], now.Add(time.Duration(i)*time.Microsecond), 50*time.Millisecond)
	}
}
