package journal

import (
	"context"
	"testing"
)

// BenchmarkReaderTail is a Reader following the active segment: Write of
// one 100-byte record, WaitDurable (fsync=never), then TryNext reads it.
func BenchmarkReaderTail(b *testing.B) {
	j := open(b, Options{Fsync: FsyncNever})
	r, err := j.Reader(1)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		first, err := j.Write(1, enc100)
		if err == nil {
			err = j.WaitDurable(ctx, first)
		}
		if err != nil {
			b.Fatal(err)
		}
		seq, _, ok, err := r.TryNext()
		if err != nil || !ok || seq != first {
			b.Fatalf("TryNext = %d, %v, %v; want seq %d", seq, ok, err, first)
		}
	}
	reportEvents(b, b.N)
}

// BenchmarkReaderTailOnly is the read side of BenchmarkReaderTail alone:
// 64 records are written per 64 iterations (outside the timer) and read
// one by one, so most TryNext calls find their record buffered and every
// 64th reads the file where it ends.
func BenchmarkReaderTailOnly(b *testing.B) {
	j := open(b, Options{Fsync: FsyncNever})
	r, err := j.Reader(1)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%64 == 0 {
			b.StopTimer()
			first, err := j.Write(64, enc100)
			if err == nil {
				err = j.WaitDurable(ctx, first+63)
			}
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		i++
		if _, _, ok, err := r.TryNext(); err != nil || !ok {
			b.Fatalf("TryNext = %v, %v", ok, err)
		}
	}
}
