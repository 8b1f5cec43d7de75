package replica

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/semprop/semprop/event"
)

// message is what peers exchange: an exchange request or answer, or one
// page of a full-state transfer. On the wire it is a compact binary form
// (encode) compressed with zstd (seal).
type message struct {
	From    string        // the sender's instance name
	URL     string        // the sender's advertised URL, if any
	Peers   []string      // the peer URLs the sender knows (gossip)
	Summary VersionVector // the sender's summary
	// Since is the vector Changes were computed against: every change of
	// the sender it does not cover is in Changes. A receiver whose summary
	// covers Since may raise its summary to Summary; otherwise it applies
	// the changes alone. Nil for a whole state.
	Since   VersionVector
	Chunked bool // answer: too far behind, pull pages instead
	More    bool // page: more pages follow
	Hello   bool // request: only asks; its summary is not a delta's
	First   bool // request: the first page of a chunked push
	Changes []Change
}

const (
	codecMagic   = 0x53 // 'S'
	codecVersion = 1
	maxString    = 4096
	maxPeers     = 256
	// maxDecoded bounds a decompressed message.
	maxDecoded = 512 << 20
)

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendVV(b []byte, v VersionVector) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	for k, n := range v {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, n)
	}
	return b
}

// encode appends m's binary form to b.
func (m *message) encode(b []byte) []byte {
	b = append(b, codecMagic, codecVersion)
	b = appendString(b, m.From)
	b = appendString(b, m.URL)
	b = binary.AppendUvarint(b, uint64(len(m.Peers)))
	for _, p := range m.Peers {
		b = appendString(b, p)
	}
	b = appendVV(b, m.Summary)
	b = appendVV(b, m.Since)
	var flags byte
	if m.Chunked {
		flags |= 1
	}
	if m.More {
		flags |= 2
	}
	if m.Hello {
		flags |= 4
	}
	if m.First {
		flags |= 8
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(m.Changes)))
	for i := range m.Changes {
		c := &m.Changes[i]
		b = appendString(b, c.Key.Tree)
		b = appendString(b, c.Key.Path)
		b = appendString(b, c.Origin)
		b = binary.AppendUvarint(b, c.Counter)
		b = appendVV(b, c.VV)
		b = binary.AppendVarint(b, c.Size)
		b = binary.AppendVarint(b, c.MTime)
		b = appendString(b, c.Hash)
		b = binary.AppendUvarint(b, uint64(c.UID))
		var f byte
		if c.Dir {
			f |= 1
		}
		if c.Deleted {
			f |= 2
		}
		b = append(b, f)
		b = appendString(b, c.Instance)
		b = binary.AppendUvarint(b, c.Seq)
		b = binary.AppendVarint(b, c.HLC.Wall)
		b = binary.AppendUvarint(b, uint64(c.HLC.Logical))
	}
	return b
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadDelta, what)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail(what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) string(what string, limit int) string {
	n := d.uvarint(what)
	if d.err != nil {
		return ""
	}
	if n > uint64(limit) || n > uint64(len(d.b)) {
		d.fail(what + " length")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) name(what string) string {
	s := d.string(what, 64)
	if d.err == nil && !ValidName(s) {
		d.fail(what)
	}
	return s
}

// count reads a count of items that take at least min bytes each, so a
// forged count cannot make the decoder allocate more than the input.
func (d *decoder) count(what string, min int, limit int) int {
	n := d.uvarint(what)
	if d.err == nil && (n > uint64(len(d.b)/min) || n > uint64(limit)) {
		d.fail(what + " count")
		return 0
	}
	return int(n)
}

func (d *decoder) vv(what string) VersionVector {
	n := d.count(what, 2, maxVectorLen)
	v := make(VersionVector, n)
	for range n {
		k := d.name(what)
		c := d.uvarint(what)
		if d.err != nil {
			return nil
		}
		if _, dup := v[k]; dup || c == 0 {
			d.fail(what + " entry")
			return nil
		}
		v[k] = c
	}
	return v
}

// decode parses the binary form of a message. It takes untrusted input.
func decode(b []byte) (*message, error) {
	d := &decoder{b: b}
	if d.byte("magic") != codecMagic || d.byte("version") != codecVersion {
		d.fail("magic or version")
		return nil, d.err
	}
	m := &message{}
	m.From = d.string("from", 64)
	if d.err == nil && m.From != "" && !ValidName(m.From) {
		d.fail("from")
	}
	m.URL = d.string("url", maxString)
	np := d.count("peers", 1, maxPeers)
	for range np {
		m.Peers = append(m.Peers, d.string("peer", maxString))
	}
	m.Summary = d.vv("summary")
	m.Since = d.vv("since")
	flags := d.byte("flags")
	m.Chunked, m.More, m.Hello, m.First = flags&1 != 0, flags&2 != 0, flags&4 != 0, flags&8 != 0
	if flags > 15 {
		d.fail("flags")
	}
	nc := d.count("changes", 16, 1<<30)
	if d.err == nil && nc > 0 {
		m.Changes = make([]Change, 0, nc)
	}
	for range nc {
		var c Change
		c.Key.Tree = d.name("tree")
		c.Key.Path = d.string("path", maxString)
		c.Origin = d.name("origin")
		c.Counter = d.uvarint("counter")
		c.VV = d.vv("vv")
		c.Size = d.varint("size")
		c.MTime = d.varint("mtime")
		c.Hash = d.string("hash", 256)
		uid := d.uvarint("uid")
		f := d.byte("flags")
		c.Dir, c.Deleted = f&1 != 0, f&2 != 0
		c.Instance = d.string("instance", 64)
		c.Seq = d.uvarint("seq")
		c.HLC = event.HLC{Wall: d.varint("hlc"), Logical: uint32(d.uvarint("hlc"))}
		if d.err != nil {
			return nil, d.err
		}
		if uid > 1<<32-1 || f > 3 || c.Counter == 0 || c.VV[c.Origin] != c.Counter || !validPath(c.Key.Path) {
			d.fail("change of " + c.Key.Tree)
			return nil, d.err
		}
		c.UID = uint32(uid)
		m.Changes = append(m.Changes, c)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return m, nil
}

// validPath reports whether p is a clean relative path: not empty, no
// leading or trailing slash, no empty, "." or ".." element, no NUL.
func validPath(p string) bool {
	if p == "" || len(p) > maxString {
		return false
	}
	start := 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) && p[i] == 0 {
			return false
		}
		if i == len(p) || p[i] == '/' {
			el := p[start:i]
			if el == "" || el == "." || el == ".." {
				return false
			}
			start = i + 1
		}
	}
	return true
}

var (
	zOnce sync.Once
	zEnc  *zstd.Encoder
	zDec  *zstd.Decoder
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder) {
	zOnce.Do(func() {
		var err error
		zEnc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		if err != nil {
			panic(err) // only bad options fail
		}
		zDec, err = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxDecoded), zstd.WithDecoderConcurrency(2))
		if err != nil {
			panic(err)
		}
	})
	return zEnc, zDec
}

// seal returns m encoded and compressed.
func (m *message) seal() []byte {
	enc, _ := zstdCodecs()
	raw := m.encode(make([]byte, 0, 64+len(m.Changes)*96))
	return enc.EncodeAll(raw, make([]byte, 0, len(raw)/4+64))
}

// open decompresses and decodes a sealed message (untrusted input).
func open(b []byte) (*message, error) {
	_, dec := zstdCodecs()
	raw, err := dec.DecodeAll(b, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadDelta, err)
	}
	return decode(raw)
}
