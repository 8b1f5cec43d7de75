package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/propagate"
)

// TestIngestBodyReuse: request bodies are read into pooled buffers and
// reused once their request is answered, so nothing an event keeps may
// point into one. In-process subscribers hold the very events ingest
// decoded; after many concurrent POSTs (each body the size of the others,
// so a reused buffer lines up with the old one) every event they hold is
// still the one that was sent, each exactly once.
func TestIngestBodyReuse(t *testing.T) {
	ts := newTestServer(t, Options{})
	sub, err := ts.m.Subscribe(propagate.SubscribeOptions{Queue: 1 << 14, Policy: propagate.PolicyBlock, BlockTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	const workers, posts, batch = 4, 25, 20
	body := func(w, p int) []byte {
		var b bytes.Buffer
		b.WriteByte('[')
		for i := range batch {
			if i > 0 {
				b.WriteByte(',')
			}
			// Same length for every (w, p, i): fixed-width numbers.
			fmt.Fprintf(&b, `{"specversion":"1.0","id":"id-%d-%02d-%02d","source":"app://w%d","type":"pool.t%d","subject":"/w%d/p%02d/e%02d","data":{"w":%d,"p":%d,"i":%d},"tenant":"t%d%02d%02d"}`,
				w, p, i, w, w, w, p, i, w, p, i, w, p, i)
		}
		b.WriteByte(']')
		return b.Bytes()
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for p := range posts {
				resp, err := http.Post(ts.URL+"/v1/events", event.MediaTypeBatch, bytes.NewReader(body(w, p)))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("POST: %s", resp.Status)
					return
				}
			}
		})
	}
	wg.Wait()
	seen := make(map[string]bool)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	buf := make([]*event.Event, 256)
	for len(seen) < workers*posts*batch {
		n, err := sub.NextBatch(ctx, buf)
		if err != nil {
			t.Fatalf("after %d events: %v", len(seen), err)
		}
		for _, ev := range buf[:n] {
			var w, p, i int
			if _, err := fmt.Sscanf(ev.Subject, "/w%d/p%d/e%d", &w, &p, &i); err != nil {
				t.Fatalf("subject %q: %v", ev.Subject, err)
			}
			tenant, _ := ev.Attr("tenant")
			want := []string{fmt.Sprintf("id-%d-%02d-%02d", w, p, i), fmt.Sprintf("app://w%d", w), fmt.Sprintf("pool.t%d", w),
				fmt.Sprintf(`{"w":%d,"p":%d,"i":%d}`, w, p, i), fmt.Sprintf("t%d%02d%02d", w, p, i)}
			got := []string{ev.SourceID, ev.Source, ev.Type, string(ev.Data), tenant}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("event %s holds %q, want %q: another request's bytes", ev.Subject, got, want)
			}
			if seen[ev.Subject] {
				t.Fatalf("event %s delivered twice", ev.Subject)
			}
			seen[ev.Subject] = true
		}
	}
}
