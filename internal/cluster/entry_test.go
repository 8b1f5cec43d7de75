package cluster

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
)

func TestBatchRoundTrip(t *testing.T) {
	now := time.Unix(1700000000, 123).UTC()
	evs := []*event.Event{
		{ID: event.NewID(), Seq: 99, Type: "fs.write", Subject: "/a", Time: now, HLC: event.HLC{Wall: now.UnixNano(), Logical: 3}, Source: "semprop://h/fuse"},
		{ID: event.NewID(), Type: "vector.insert", Data: []byte(`{"dims":768}`), DataContentType: "application/json"},
	}
	b, err := appendBatch(nil, 42, event.HLC{Wall: 7, Logical: 1}, evs)
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].Seq != 99 {
		t.Fatalf("appendBatch changed the caller's Seq to %d", evs[0].Seq)
	}
	var got batch
	if err := decodeBatch(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.nonce != 42 || got.hlc != (event.HLC{Wall: 7, Logical: 1}) || len(got.raw) != 2 {
		t.Fatalf("decodeBatch = nonce %d hlc %v %d events, want 42 7.1 2", got.nonce, got.hlc, len(got.raw))
	}
	for i, raw := range got.raw {
		for _, seq := range []uint64{1, 127, 128, 1 << 40} {
			var ev event.Event
			if err := ev.UnmarshalBinary(withSeq(nil, raw, seq)); err != nil {
				t.Fatalf("event %d seq %d: %v", i, seq, err)
			}
			want := *evs[i]
			want.Seq = seq
			if diff := cmp.Diff(want, ev); diff != "" {
				t.Errorf("event %d with seq %d (-want +got):\n%s", i, seq, diff)
			}
		}
	}
}

func TestDecodeBatchRejects(t *testing.T) {
	good, _ := appendBatch(nil, 1, event.HLC{}, []*event.Event{{ID: event.NewID(), Type: "a.b"}})
	tests := map[string][]byte{
		"empty":         nil,
		"wrong kind":    append([]byte{kindMemberSet}, good[1:]...),
		"short header":  good[:batchHeader-1],
		"truncated":     good[:len(good)-1],
		"trailing byte": append(bytes.Clone(good), 0),
		"huge count":    func() []byte { b := bytes.Clone(good); b[21], b[22], b[23], b[24] = 0xff, 0xff, 0xff, 0x7f; return b }(),
	}
	for name, b := range tests {
		var got batch
		if err := decodeBatch(b, &got); !errors.Is(err, ErrBadEntry) {
			t.Errorf("%s: decodeBatch err = %v, want ErrBadEntry", name, err)
		}
	}
}

// FuzzDecodeBatch: forwarded batches come from the network; decoding must
// never panic, and what decodes must splice into decodable records.
func FuzzDecodeBatch(f *testing.F) {
	good, _ := appendBatch(nil, 1, event.HLC{Wall: 5}, []*event.Event{
		{ID: event.NewID(), Type: "a.b", Subject: "/x"}, {ID: event.NewID(), Type: "c", Data: []byte("{}")},
	})
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{kindBatch})
	f.Fuzz(func(t *testing.T, data []byte) {
		var b batch
		if decodeBatch(data, &b) != nil {
			return
		}
		for _, raw := range b.raw {
			rec := withSeq(nil, raw, 12345)
			var ev event.Event
			if ev.UnmarshalBinary(rec) == nil && ev.Seq != 12345 {
				t.Fatalf("spliced seq decodes as %d", ev.Seq)
			}
		}
	})
}

// TestFSMEntryOfAnotherNode: an entry whose nonce is that of a batch
// pending on this node but that carries other events (another node's) is
// applied with its own events; the pending batch stays for its entry.
func TestFSMEntryOfAnotherNode(t *testing.T) {
	j, err := journal.Open(journal.Options{Dir: t.TempDir(), Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var got []*event.Event
	n := &Node{log: quietLog, clock: event.NewClock(time.Second), pending: map[uint64][]*event.Event{},
		deliver: func(evs []*event.Event) { got = append(got, evs...) }}
	f := newFSM(n, j)
	mine := []*event.Event{{ID: event.NewID(), Type: "mine.one"}}
	n.addPending(7, mine)
	theirs := []*event.Event{
		{ID: event.NewID(), Type: "theirs.a"}, {ID: event.NewID(), Type: "theirs.b"}, {ID: event.NewID(), Type: "theirs.c"},
	}
	entry, err := appendBatch(nil, 7, event.HLC{}, theirs)
	if err != nil {
		t.Fatal(err)
	}
	res := f.ApplyBatch([]*raft.Log{{Index: 1, Type: raft.LogCommand, Data: entry}})
	if r := res[0].(applyResult); r.err != nil || r.first != 1 {
		t.Fatalf("apply = %+v, want first 1", r)
	}
	if len(got) != 3 {
		t.Fatalf("delivered %d events, want the entry's 3", len(got))
	}
	for i, ev := range got {
		if ev.ID != theirs[i].ID || ev.Seq != uint64(i+1) {
			t.Errorf("delivered #%d = %s seq %d, want %s seq %d", i, ev.ID, ev.Seq, theirs[i].ID, i+1)
		}
	}
	if mine[0].Seq != 0 {
		t.Errorf("this node's pending event got seq %d from another node's entry", mine[0].Seq)
	}
	if p := n.takePending(7); len(p) != 1 || p[0] != mine[0] {
		t.Errorf("pending batch 7 = %v after another node's entry, want it kept", p)
	}
}
