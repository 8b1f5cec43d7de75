package event

import (
	"bytes"
	"fmt"
	"testing"
)

// TestBatchAllocs: decoding a batch allocates a few objects per batch,
// not per event: events are allocated a run at a time, the repeated type,
// source and content type once per batch, and what differs between events
// (subject, id, data) is copied into chunks shared by the batch.
func TestBatchAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	var buf bytes.Buffer
	buf.WriteByte('[')
	const n = 256
	for i := range n {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"specversion":"1.0","id":"%d","type":"app.job","source":"app://x","datacontenttype":"application/json","subject":"/data/%d","data":{"n":%d}}`, i, i, i)
	}
	buf.WriteByte(']')
	evs, err := ParseJSONBatch(buf.Bytes())
	if err != nil || len(evs) != n || evs[7].Type != "app.job" || evs[7].Subject != "/data/7" {
		t.Fatalf("parse: %v, %d events", err, len(evs))
	}
	allocs := testing.AllocsPerRun(20, func() { ParseJSONBatch(buf.Bytes()) })
	t.Logf("%.2f allocations per event", allocs/n)
	if allocs/n > 0.1 {
		t.Errorf("%.2f allocations per event, want at most 0.1 (runs of events, shared chunks)", allocs/n)
	}
}
