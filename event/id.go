package event

import (
	"crypto/rand"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// ID is a time-ordered 128-bit identifier: a ULID (48-bit millisecond time,
// 80 bits of monotonic randomness). IDs made by one process sort in the order
// they were made.
type ID [16]byte

var (
	idMu      sync.Mutex
	idEntropy = ulid.Monotonic(rand.Reader, 0)
)

// NewID returns a new ID. It is safe for concurrent use.
func NewID() ID { return newID(ulid.Timestamp(time.Now())) }

// NewIDAt returns a new ID whose time part is the millisecond of wall
// (nanoseconds since the epoch), e.g. an event's HLC wall time; it spares
// a clock read. IDs from one process still never repeat and sort in the
// order they were made within a millisecond. It is safe for concurrent use.
func NewIDAt(wall int64) ID {
	if wall < 0 {
		wall = 0
	}
	return newID(uint64(wall / 1e6))
}

func newID(ms uint64) ID {
	idMu.Lock()
	id, err := ulid.New(ms, idEntropy)
	idMu.Unlock()
	if err != nil {
		// Monotonic entropy overflows only after 2^80 IDs in one
		// millisecond; crypto/rand does not fail on Linux.
		panic("event: new id: " + err.Error())
	}
	return ID(id)
}

// IsZero reports whether id is the zero ID (unset).
func (id ID) IsZero() bool { return id == ID{} }

// String returns the 26-character Crockford base32 form.
func (id ID) String() string { return ulid.ULID(id).String() }

// AppendText appends the 26-character form to b.
func (id ID) AppendText(b []byte) ([]byte, error) {
	var buf [ulid.EncodedSize]byte
	_ = ulid.ULID(id).MarshalTextTo(buf[:])
	return append(b, buf[:]...), nil
}

// Time returns the millisecond timestamp embedded in the ID.
func (id ID) Time() time.Time { return ulid.Time(ulid.ULID(id).Time()) }

// ParseID parses the 26-character form of an ID.
func ParseID(s string) (ID, error) {
	u, err := ulid.ParseStrict(s)
	if err != nil {
		return ID{}, err
	}
	return ID(u), nil
}
