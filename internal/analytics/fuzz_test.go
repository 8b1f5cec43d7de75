package analytics

import (
	"bytes"
	"testing"
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
