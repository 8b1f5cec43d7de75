package enrich

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

type discard struct{}

func (discard) PublishBatch(context.Context, []*event.Event) error { return nil }

func benchFile(b *testing.B, size int) string {
	b.Helper()
	f := filepath.Join(b.TempDir(), "f")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(f, data, 0o644); err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkReadContent is the enrichment throughput of one reader: hash,
// mime and entropy of a file in the page cache.
func BenchmarkReadContent(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20, 64 << 20} {
		for _, alg := range []string{HashXXH3, HashSHA256} {
			b.Run(alg+"/"+strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
				f := benchFile(b, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if _, flag, err := readContent(f, alg, false, 1<<40); flag != "" || err != nil {
						b.Fatal(flag, err)
					}
				}
			})
		}
	}
}

// BenchmarkPublishDelay is the delay PublishBatch adds per event (a batch
// of one fs.write of a 4 KiB file), p50 and p99, against an event the
// Publisher does not read (fs.attrib).
func BenchmarkPublishDelay(b *testing.B) {
	for _, typ := range []string{event.TypeWrite, event.TypeAttrib} {
		b.Run(typ, func(b *testing.B) {
			f := benchFile(b, 4<<10)
			p, err := New(Options{Next: discard{}, Root: filepath.Dir(f)})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close(context.Background())
			var ds []time.Duration
			ctx := context.Background()
			if typ == event.TypeWrite {
				b.SetBytes(4 << 10)
			}
			b.ReportAllocs()
			for b.Loop() {
				ev := &event.Event{Type: typ, Subject: f}
				start := time.Now()
				if err := p.PublishBatch(ctx, []*event.Event{ev}); err != nil {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(start))
			}
			slices.Sort(ds)
			b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(ds[len(ds)*99/100].Nanoseconds()), "p99-ns")
			if st := p.Stats(); st.Skipped > 0 {
				b.Errorf("%d events skipped", st.Skipped)
			}
		})
	}
}

// BenchmarkPublishBatch is a bridge-sized batch (256 writes of distinct
// 4 KiB files) through the worker pool.
func BenchmarkPublishBatch(b *testing.B) {
	dir := b.TempDir()
	var paths []string
	data := make([]byte, 4<<10)
	for i := range 256 {
		rand.Read(data)
		p := filepath.Join(dir, strconv.Itoa(i))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		paths = append(paths, p)
	}
	p, err := New(Options{Next: discard{}, Root: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	b.SetBytes(int64(len(paths) * len(data)))
	b.ReportAllocs()
	var ds []time.Duration
	for b.Loop() {
		evs := make([]*event.Event, len(paths))
		for i, f := range paths {
			evs[i] = &event.Event{Type: event.TypeWrite, Subject: f}
		}
		start := time.Now()
		if err := p.PublishBatch(context.Background(), evs); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds())/float64(len(paths)), "p50-ns/event")
	b.ReportMetric(float64(ds[len(ds)*99/100].Nanoseconds()), "p99-ns/batch")
}
