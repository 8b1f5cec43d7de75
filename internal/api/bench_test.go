package api

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/semprop/semprop/client"
	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
	"github.com/semprop/semprop/internal/propagate"
)

// benchServer is newTestServer with fsync=always: ingest answers only once
// events are fsynced.
func benchServer(b *testing.B) *testServer {
	b.Helper()
	dir := b.TempDir()
	j, err := journal.Open(journal.Options{Dir: dir + "/journal", Fsync: journal.FsyncAlways, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	m, _ := propagate.New(propagate.Options{Journal: j, Dir: dir, Logger: quiet})
	s := New(Options{Manager: m, Logger: quiet})
	s.SetReady(true, "")
	ts := &testServer{api: s, m: m}
	ts.Server = httptest.NewServer(s)
	ts.c = client.New(ts.URL, "")
	b.Cleanup(func() { s.Close(); ts.Server.Close(); m.Close(); j.Close() })
	return ts
}

func batchBody(n int) []byte {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i := range n {
		if i > 0 {
			buf.WriteByte(',')
		}
		// ~100-byte events.
		buf.WriteString(`{"specversion":"1.0","id":"1","type":"bench.ingest","source":"bench","subject":"/data/file.txt","data":{"n":1}}`)
	}
	buf.WriteByte(']')
	return buf.Bytes()
}

// BenchmarkIngestBatch posts batches of 1,000 small events over loopback
// HTTP from 4 concurrent clients; every answer comes once the events are
// fsynced. Reports events/s.
func BenchmarkIngestBatch(b *testing.B) {
	ts := benchServer(b)
	body := batchBody(1000)
	var posted atomic.Int64
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := http.Post(ts.URL+"/v1/events", event.MediaTypeBatch, bytes.NewReader(body))
			if err != nil || resp.StatusCode != 200 {
				b.Errorf("post: %v %v", resp, err)
				return
			}
			resp.Body.Close()
			posted.Add(1000)
		}
	})
	b.ReportMetric(float64(posted.Load())/time.Since(start).Seconds(), "events/s")
}

// BenchmarkSSEFanout: 10 SSE clients follow a journal of b.N×1000 events
// published beforehand; reports the events/s they receive together.
func BenchmarkSSEFanout(b *testing.B) {
	ts := benchServer(b)
	const clients, batch = 10, 1000
	evs := make([]*event.Event, batch)
	for i := 0; i < b.N; i++ {
		for j := range evs {
			evs[j] = &event.Event{Type: "bench.sse", Subject: "/data/file.txt", Data: []byte(`{"n":1}`)}
		}
		if err := ts.m.PublishBatch(context.Background(), evs); err != nil {
			b.Fatal(err)
		}
	}
	total := uint64(b.N * batch)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			var last uint64
			err := ts.c.Stream(ctx, client.Selector{}, 0, func(ev *event.Event) error {
				if ev.Seq != last+1 {
					b.Errorf("gap: %d after %d", ev.Seq, last)
				}
				last = ev.Seq
				if last == total {
					return context.Canceled
				}
				return nil
			})
			if last != total {
				b.Errorf("client got to %d of %d: %v", last, total, err)
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(total*clients)/time.Since(start).Seconds(), "events/s")
}
