package bridge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/capture"
)

func BenchmarkTranslate(b *testing.B) {
	op := capture.Op{Kind: capture.KindWrite, Boundary: event.BoundaryFUSE, Time: time.Now(), Path: "/m/dir/file.txt",
		Known: event.HasPID | event.HasTID | event.HasUID | event.HasGID | event.HasInode | event.HasBytes | event.HasOffset | event.HasLength,
		PID:   42, TID: 43, UID: 1000, GID: 1000, Comm: "cp", Exe: "/usr/bin/cp", Inode: 77, Bytes: 4096, Length: 4096}
	var dst event.Event
	b.ReportAllocs()
	for b.Loop() {
		Translate(&op, &dst)
	}
}

type nopPublisher struct{}

func (nopPublisher) PublishBatch(context.Context, []*event.Event) error { return nil }

// pairOps builds n FUSE writes and their kernel shadows on distinct files.
func pairOps(n int) (fuse, kern []capture.Op) {
	fuse, kern = make([]capture.Op, n), make([]capture.Op, n)
	for i := range n {
		fuse[i] = capture.Op{Kind: capture.KindWrite, Boundary: event.BoundaryFUSE, Path: fmt.Sprintf("/m/d/f%d", i),
			Known: event.HasPID | event.HasBytes, PID: 42, Comm: "cp", Bytes: 10}
		kern[i] = capture.Op{Kind: capture.KindWrite, Boundary: event.BoundaryKernel, Path: fmt.Sprintf("/b/d/f%d", i),
			Known: event.HasPID | event.HasInode | event.HasSize, PID: 100, Inode: uint64(i)}
	}
	return fuse, kern
}

// BenchmarkCorrelate measures the correlator core per logical operation: a
// FUSE write and its kernel shadow in, one merged event out.
func BenchmarkCorrelate(b *testing.B) {
	fuse, kern := pairOps(1024)
	var st counters
	n := 0
	c := newCorrelator(config{window: 50 * time.Millisecond, selfPID: 100, backing: "/b", mount: "/m", bridged: true,
		holdWrites: true, srcKernel: "k", srcFUSE: "f"}, &st, 4096, func(*event.Event) { n++ }, func(InvalKind, string) {})
	now := time.Unix(1, 0)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		j := i % len(fuse)
		f, k := fuse[j], kern[j]
		f.Size, k.Size = int64(i), int64(i) // distinct content for the LRU
		now = now.Add(time.Microsecond)
		c.add(&f, now)
		c.add(&k, now)
		c.expire(now)
		i++
	}
	if n != i {
		b.Fatalf("published %d events for %d pairs", n, i)
	}
}

// BenchmarkBridge measures Emit + correlate + batch publish through the
// whole Bridge (two goroutines, nop publisher) per logical operation.
func BenchmarkBridge(b *testing.B) {
	fuse, kern := pairOps(1024)
	br, err := New(Options{Publisher: nopPublisher{}, Backing: "/b", Mount: "/m", SelfPID: 100})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	fs, ks := br.FUSE(), br.Kernel()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		j := i % len(fuse)
		f, k := fuse[j], kern[j]
		f.Size, k.Size = int64(i), int64(i)
		fs.Emit(&f)
		ks.Emit(&k)
		i++
	}
	for deadline := time.Now().Add(10 * time.Second); br.Stats().Emitted < uint64(i) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	cancel()
	<-done
	if st := br.Stats(); st.Emitted != uint64(i) || st.Merged != uint64(i) {
		b.Fatalf("emitted %d merged %d for %d pairs", st.Emitted, st.Merged, i)
	}
}
