package cluster

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/semprop/semprop/event"
)

// Log entry kinds. An entry is one kind byte followed by its body.
const (
	kindBatch     byte = 1 // a batch of events
	kindMemberSet byte = 2 // JSON Member: add or update membership metadata
	kindMemberDel byte = 3 // JSON Member (ID only): drop membership metadata
)

// batchHeader is kind, nonce (u64), leader HLC wall (i64) and logical (u32),
// event count (u32).
const batchHeader = 1 + 8 + 8 + 4 + 4

// seqOffset is where the Seq uvarint starts in an event's binary form
// (version byte, one-byte presence varint, 16-byte ID). A batch carries
// events with Seq 0 (one byte) there; the FSM splices the real seq in.
const seqOffset = 1 + 1 + 16

// appendBatch encodes evs (whose Seq must be 0) as one batch entry.
func appendBatch(b []byte, nonce uint64, hlc event.HLC, evs []*event.Event) ([]byte, error) {
	b = append(b, kindBatch)
	b = binary.LittleEndian.AppendUint64(b, nonce)
	b = binary.LittleEndian.AppendUint64(b, uint64(hlc.Wall))
	b = binary.LittleEndian.AppendUint32(b, hlc.Logical)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(evs)))
	for _, ev := range evs {
		seq := ev.Seq
		ev.Seq = 0
		n := len(b)
		b = append(b, 0, 0, 0, 0)
		var err error
		b, err = ev.AppendBinary(b)
		ev.Seq = seq
		if err != nil {
			return nil, err
		}
		binary.LittleEndian.PutUint32(b[n:], uint32(len(b)-n-4))
	}
	return b, nil
}

// batch is a decoded batch entry: raw event encodings (Seq 0) that alias the
// entry's bytes.
type batch struct {
	nonce uint64
	hlc   event.HLC
	raw   [][]byte
}

func decodeBatch(b []byte, dst *batch) error {
	if len(b) < batchHeader || b[0] != kindBatch {
		return fmt.Errorf("%w: short batch header", ErrBadEntry)
	}
	dst.nonce = binary.LittleEndian.Uint64(b[1:])
	dst.hlc = event.HLC{Wall: int64(binary.LittleEndian.Uint64(b[9:])), Logical: binary.LittleEndian.Uint32(b[17:])}
	n := int(binary.LittleEndian.Uint32(b[21:]))
	b = b[batchHeader:]
	if n > len(b)/4 {
		return fmt.Errorf("%w: %d events in %d bytes", ErrBadEntry, n, len(b))
	}
	dst.raw = dst.raw[:0]
	for i := range n {
		if len(b) < 4 {
			return fmt.Errorf("%w: event %d: short length", ErrBadEntry, i)
		}
		l := int(binary.LittleEndian.Uint32(b))
		if l > len(b)-4 || l <= seqOffset || !spliceable(b[4:4+l]) {
			return fmt.Errorf("%w: event %d: bad encoding", ErrBadEntry, i)
		}
		dst.raw = append(dst.raw, b[4:4+l])
		b = b[4+l:]
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBadEntry, len(b))
	}
	return nil
}

// spliceable reports whether raw has the layout withSeq relies on.
func spliceable(raw []byte) bool {
	return raw[0] == event.BinaryVersion && raw[1] < 0x80 && raw[seqOffset] == 0
}

// withSeq appends raw (an event encoded with Seq 0) to dst with seq spliced
// in: the journal record of the event.
func withSeq(dst, raw []byte, seq uint64) []byte {
	dst = append(dst, raw[:seqOffset]...)
	dst = binary.AppendUvarint(dst, seq)
	return append(dst, raw[seqOffset+1:]...)
}

// Member is one node's membership metadata, replicated through the log so
// that every node knows every other node's Raft address (where members
// reach each other) and HTTP API URL (shown in the status, for clients).
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIURL   string `json:"api_url"`
}

func memberEntry(kind byte, m Member) []byte {
	b, _ := json.Marshal(m)
	return append([]byte{kind}, b...)
}
