package event

import (
	"testing"

	"github.com/semprop/semprop/internal/cputime"
)

// sdkBatch is a batch as the Go SDK sends it: bench/run's row 2 events
// (type, source, subject, a ULID id, JSON data of 64 bytes).
func sdkBatch(n int) (evs []*Event, body []byte) {
	data := []byte(`{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	evs = make([]*Event, n)
	body = append(body, '[')
	for i := range evs {
		evs[i] = &Event{ID: NewID(), Type: "bench.net", Source: "bench", Subject: "/data/file.txt", DataContentType: "application/json", Data: data}
		if i > 0 {
			body = append(body, ',')
		}
		body = evs[i].AppendJSON(body)
	}
	return evs, append(body, ']')
}

// BenchmarkParseJSONBatch decodes the SDK's batch of 1,000 events; one op
// is one batch.
func BenchmarkParseJSONBatch(b *testing.B) {
	_, body := sdkBatch(1000)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	cpu0 := cputime.Now()
	for b.Loop() {
		if _, err := ParseJSONBatch(body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cputime.Now()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkMarshalBatch encodes the SDK's batch of 1,000 events with
// MarshalJSON, one event at a time, as the SDK did.
func BenchmarkMarshalBatch(b *testing.B) {
	evs, body := sdkBatch(1000)
	buf := make([]byte, 0, len(body))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		buf = append(buf[:0], '[')
		for i, ev := range evs {
			if i > 0 {
				buf = append(buf, ',')
			}
			j, err := ev.MarshalJSON()
			if err != nil {
				b.Fatal(err)
			}
			buf = append(buf, j...)
		}
		buf = append(buf, ']')
	}
}

// BenchmarkAppendBatch encodes the SDK's batch of 1,000 events into one
// buffer with AppendJSONChecked, as the SDK does now.
func BenchmarkAppendBatch(b *testing.B) {
	evs, body := sdkBatch(1000)
	buf := make([]byte, 0, len(body))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	cpu0 := cputime.Now()
	for b.Loop() {
		buf = append(buf[:0], '[')
		for i, ev := range evs {
			if i > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = ev.AppendJSONChecked(buf); err != nil {
				b.Fatal(err)
			}
		}
		buf = append(buf, ']')
	}
	b.ReportMetric(float64(cputime.Now()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkParseJSONBatchGeneral is BenchmarkParseJSONBatch with the
// general decoder alone (no fast path): the baseline of the fast path.
func BenchmarkParseJSONBatchGeneral(b *testing.B) {
	_, body := sdkBatch(1000)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	cpu0 := cputime.Now()
	for b.Loop() {
		if _, err := parseJSONBatch(body, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cputime.Now()-cpu0)/float64(b.N), "cpu-ns/op")
}
