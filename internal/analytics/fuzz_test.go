package analytics

import (
	"bytes"
	"testing"

	"github.com/semprop/semprop/event"
)

// FuzzStoreRecord feeds arbitrary bytes to the store's record decoder (a
// store file is read back after crashes and may be damaged): it must
// never panic, and what it accepts must encode back to the same record.
func FuzzStoreRecord(f *testing.F) {
	r := &rollup{res: res1m, start: 1764912000, count: 3, bytes: 4096, lastSeq: 42, items: []rollupItem{
		{dim: dimDir, key: "/srv/data", count: 2, bytes: 4000}, {dim: dimDir, key: "/home/alice", count: 1, bytes: 96},
	}}
	f.Add(encodeRollup(nil, r, r.items))
	f.Add(encodeRollup(nil, &rollup{start: -5}, nil))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, n, err := nextRecord(b)
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("record length %d beyond %d bytes", n, len(b))
		}
		got, err := decodeRollup(p, res1m, dimDir)
		if err != nil {
			return
		}
		again := encodeRollup(nil, got, got.items)
		if !bytes.Equal(again, b[:n]) {
			// Varints have one canonical form when written; a decoded
			// non-canonical one may re-encode shorter. It must decode to
			// the same rollup.
			p2, _, err := nextRecord(again)
			if err != nil {
				t.Fatalf("re-encoded record: %v", err)
			}
			got2, err := decodeRollup(p2, res1m, dimDir)
			if err != nil || got2.start != got.start || got2.count != got.count || len(got2.items) != len(got.items) {
				t.Fatalf("re-encoded record decodes to %+v, %v; want %+v", got2, err, got)
			}
		}
	})
}

// FuzzRecordView checks the engine's decoder of journal records against
// event.Event.UnmarshalBinary: both accept exactly the same inputs, and
// every field the engine reads is the one the event holds.
func FuzzRecordView(f *testing.F) {
	for _, ev := range recordReplay(200)[:100] {
		rec, err := ev.AppendBinary(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(rec)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r recordView
		rerr := r.decode(b)
		var ev event.Event
		eerr := ev.UnmarshalBinary(b)
		if (rerr == nil) != (eerr == nil) {
			t.Fatalf("decode = %v, UnmarshalBinary = %v", rerr, eerr)
		}
		if rerr != nil {
			return
		}
		if r.hasTime == ev.Time.IsZero() {
			t.Errorf("hasTime = %v, event time %v", r.hasTime, ev.Time)
		}
		if sec, ns := r.eventTime(); sec != ev.Time.Unix() || ns != ev.Time.UnixNano() {
			t.Errorf("eventTime = %d, %d, want %d, %d", sec, ns, ev.Time.Unix(), ev.Time.UnixNano())
		}
		c := &ev.Context
		if string(r.typ) != ev.Type || string(r.subject) != ev.Subject || string(r.comm) != c.Comm {
			t.Errorf("type, subject, comm = %q %q %q, want %q %q %q", r.typ, r.subject, r.comm, ev.Type, ev.Subject, c.Comm)
		}
		if r.known != c.Known || r.uid != c.UID || r.size != c.Size || r.bytes != c.Bytes {
			t.Errorf("known, uid, size, bytes = %v %d %d %d, want %v %d %d %d", r.known, r.uid, r.size, r.bytes, c.Known, c.UID, c.Size, c.Bytes)
		}
	})
}
