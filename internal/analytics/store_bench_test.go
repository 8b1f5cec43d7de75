package analytics

import (
	"fmt"
	"testing"
	"time"
)

// The store comparison's workload (the same in storebench/ for SQLite and
// bbolt): a 1-minute bucket holds 10,000 series, 100 keys by type and
// 9,900 by dir; the query reads one day at 1 min by type.
const (
	benchTypes  = 100
	benchDirs   = 9900
	benchBucket = 60
)

func benchRollup(start int64) *rollup {
	r := &rollup{res: res1m, start: start, count: 1, bytes: 1}
	for i := range benchTypes {
		r.items = append(r.items, rollupItem{dim: dimType, key: fmt.Sprintf("type.%d", i), count: int64(i + 1), bytes: int64(i * 100)})
	}
	for i := range benchDirs {
		r.items = append(r.items, rollupItem{dim: dimDir, key: fmt.Sprintf("/srv/dir%05d", i), count: int64(i + 1), bytes: int64(i * 100)})
	}
	return r
}

// BenchmarkStoreWrite: the cost of persisting one 1-minute bucket of
// 10,000 series (ns/op per bucket; divide by 10,000 for a series).
func BenchmarkStoreWrite(b *testing.B) {
	s, err := openStore(b.TempDir(), Config{}.Defaults().Retention)
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	r := benchRollup(0)
	b.ReportAllocs()
	start := int64(0)
	for b.Loop() {
		start += benchBucket
		r.start = start
		if err := s.append(r, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStoreQueryDay: one day at 1 min (1,440 buckets of 10,000
// series), the series by type.
func BenchmarkStoreQueryDay(b *testing.B) {
	s, err := openStore(b.TempDir(), Config{}.Defaults().Retention)
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	r := benchRollup(0)
	for i := range 1440 {
		r.start = int64(i * benchBucket)
		if err := s.append(r, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		rs, err := s.readDims(res1m, 0, 86400, 1<<dimType)
		if err != nil || len(rs) != 1440 || len(rs[0].items) != benchTypes {
			b.Fatalf("read %d buckets, %v", len(rs), err)
		}
	}
	_ = time.Second
}
