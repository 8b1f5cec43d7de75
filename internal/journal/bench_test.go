package journal

import (
	"bytes"
	"context"
	"fmt"
	"testing"
)

var payload100 = bytes.Repeat([]byte{'p'}, 100)

func enc100(_ int, _ uint64, dst []byte) ([]byte, error) { return append(dst, payload100...), nil }

func reportEvents(b *testing.B, events int) {
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

func reportFlushes(b *testing.B, j *Journal) {
	st := j.Stats()
	b.ReportMetric(float64(st.LastSeq)/float64(st.Flushes), "events/flush")
}

// BenchmarkWrite is the cost of Write alone (no waiting), one record per call.
func BenchmarkWrite(b *testing.B) {
	j := open(b, Options{Fsync: FsyncNever})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := j.Write(1, enc100); err != nil {
			b.Fatal(err)
		}
	}
	reportEvents(b, b.N)
}

// BenchmarkWriteWaitInterval is Write of a batch of 100-byte payloads
// followed by WaitDurable of its last seq, fsync=interval, one appender.
func BenchmarkWriteWaitInterval(b *testing.B) {
	for _, n := range []int{64, 256} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			j := open(b, Options{Fsync: FsyncInterval})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				first, err := j.Write(n, enc100)
				if err != nil {
					b.Fatal(err)
				}
				if err := j.WaitDurable(ctx, first+uint64(n)-1); err != nil {
					b.Fatal(err)
				}
			}
			reportEvents(b, b.N*n)
			reportFlushes(b, j)
		})
	}
}

// BenchmarkWriteWaitIntervalConcurrent: 64 appenders (parallelism 32 x
// GOMAXPROCS 2), each doing Write of a batch + WaitDurable, fsync=interval.
func BenchmarkWriteWaitIntervalConcurrent(b *testing.B) {
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("appenders=64/batch=%d", n), func(b *testing.B) {
			j := open(b, Options{Fsync: FsyncInterval})
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					first, err := j.Write(n, enc100)
					if err != nil {
						b.Error(err)
						return
					}
					if err := j.WaitDurable(ctx, first+uint64(n)-1); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportEvents(b, b.N*n)
			reportFlushes(b, j)
		})
	}
}

// BenchmarkAppendAlways is Append of one 100-byte payload with fsync=always:
// one appender (one fsync per event) against 64 concurrent appenders (group
// commit shares fsyncs).
func BenchmarkAppendAlways(b *testing.B) {
	b.Run("appenders=1", func(b *testing.B) {
		j := open(b, Options{Fsync: FsyncAlways})
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := j.Append(ctx, payload100); err != nil {
				b.Fatal(err)
			}
		}
		reportEvents(b, b.N)
		st := j.Stats()
		b.ReportMetric(float64(b.N)/float64(st.Fsyncs), "events/fsync")
	})
	b.Run("appenders=64", func(b *testing.B) {
		j := open(b, Options{Fsync: FsyncAlways})
		ctx := context.Background()
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := j.Append(ctx, payload100); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportEvents(b, b.N)
		st := j.Stats()
		b.ReportMetric(float64(st.LastSeq)/float64(st.Fsyncs), "events/fsync")
	})
}

// BenchmarkReader reads 100-byte records sequentially with TryNext.
func BenchmarkReader(b *testing.B) {
	j := open(b, Options{Fsync: FsyncNever, SegmentSize: 8 << 20})
	const n = 200_000
	for i := 0; i < n; i += 1000 {
		if _, err := j.Write(1000, enc100); err != nil {
			b.Fatal(err)
		}
	}
	if err := j.WaitDurable(context.Background(), n); err != nil {
		b.Fatal(err)
	}
	r, err := j.Reader(1)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { r.Close() }()
	b.ReportAllocs()
	b.SetBytes(int64(len(payload100)))
	for b.Loop() {
		_, _, ok, err := r.TryNext()
		if err != nil {
			b.Fatal(err)
		}
		if !ok {
			r.Close()
			if r, err = j.Reader(1); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportEvents(b, b.N)
}
