package event

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/semprop/semprop/internal/nanoclock"
)

// HLC is a hybrid logical clock timestamp: physical wall time in
// nanoseconds since the Unix epoch, and a logical counter that orders events
// with the same wall time. HLCs compare like (Wall, Logical) pairs and stay
// close to real time (Kulkarni et al., "Logical Physical Clocks", 2014).
type HLC struct {
	Wall    int64
	Logical uint32
}

// IsZero reports whether t is unset.
func (t HLC) IsZero() bool { return t == HLC{} }

// Compare returns -1, 0 or +1 as t is before, equal to or after u.
func (t HLC) Compare(u HLC) int {
	switch {
	case t.Wall < u.Wall:
		return -1
	case t.Wall > u.Wall:
		return 1
	case t.Logical < u.Logical:
		return -1
	case t.Logical > u.Logical:
		return 1
	}
	return 0
}

// String formats t as "WALL.LOGICAL", wall in decimal nanoseconds.
func (t HLC) String() string {
	return strconv.FormatInt(t.Wall, 10) + "." + strconv.FormatUint(uint64(t.Logical), 10)
}

// AppendText appends the String form of t to b.
func (t HLC) AppendText(b []byte) ([]byte, error) {
	b = strconv.AppendInt(b, t.Wall, 10)
	b = append(b, '.')
	return strconv.AppendUint(b, uint64(t.Logical), 10), nil
}

// ParseHLC parses the String form of an HLC.
func ParseHLC(s string) (HLC, error) {
	wall, logical, ok := strings.Cut(s, ".")
	if !ok {
		return HLC{}, fmt.Errorf("hlc %q: want WALL.LOGICAL", s)
	}
	w, err := strconv.ParseInt(wall, 10, 64)
	if err != nil || w < 0 {
		return HLC{}, fmt.Errorf("hlc %q: bad wall time", s)
	}
	l, err := strconv.ParseUint(logical, 10, 32)
	if err != nil {
		return HLC{}, fmt.Errorf("hlc %q: bad logical counter", s)
	}
	return HLC{Wall: w, Logical: uint32(l)}, nil
}

// ErrClockOffset is returned by Clock.Update when a remote timestamp is
// further ahead of the local physical clock than the clock's maximum offset.
var ErrClockOffset = errors.New("event: remote clock ahead of local clock by more than the maximum offset")

// DefaultMaxOffset is the largest clock offset a Clock accepts from a peer.
const DefaultMaxOffset = 500 * time.Millisecond

// Clock issues HLC timestamps. It is safe for concurrent use.
type Clock struct {
	maxOffset time.Duration
	physical  func() int64
	system    bool // physical is nanoclock.Wall: ReserveAt derives it from the caller's reading

	mu   sync.Mutex
	last HLC
}

// NewClock returns a clock over the system's wall time that refuses remote
// timestamps more than maxOffset ahead (DefaultMaxOffset if zero). It
// reads the wall time with one clock read (nanoclock.Wall), so a step of
// the system clock shows within nanoclock.Reanchor.
func NewClock(maxOffset time.Duration) *Clock {
	c := NewClockFunc(maxOffset, nanoclock.Wall)
	c.system = true
	return c
}

// NewClockFunc is NewClock with a physical clock of the caller's; for tests.
func NewClockFunc(maxOffset time.Duration, physical func() int64) *Clock {
	if maxOffset <= 0 {
		maxOffset = DefaultMaxOffset
	}
	return &Clock{maxOffset: maxOffset, physical: physical}
}

// MaxOffset returns the largest offset Update accepts.
func (c *Clock) MaxOffset() time.Duration { return c.maxOffset }

// Now returns a timestamp greater than every timestamp this clock has
// returned or seen in Update.
func (c *Clock) Now() HLC {
	pt := c.physical()
	c.mu.Lock()
	if pt > c.last.Wall {
		c.last = HLC{Wall: pt}
	} else {
		c.last.Logical++
	}
	t := c.last
	c.mu.Unlock()
	return t
}

// Reserve returns the first of n consecutive timestamps (same wall time,
// logical counters first.Logical … first.Logical+n-1), all greater than
// any this clock issued before, with one read of the physical clock.
func (c *Clock) Reserve(n int) HLC { return c.reserve(n, c.physical()) }

// ReserveAt is Reserve for a caller that has just read the monotonic
// clock (nanoclock.Mono) for its own purposes: a clock over the system's
// wall time derives the physical time from that reading instead of
// reading the clock again; a clock made by NewClockFunc reads its own.
func (c *Clock) ReserveAt(n int, mono int64) HLC {
	if c.system {
		return c.reserve(n, nanoclock.WallAt(mono))
	}
	return c.reserve(n, c.physical())
}

func (c *Clock) reserve(n int, pt int64) HLC {
	if n <= 0 {
		n = 1
	}
	c.mu.Lock()
	if pt > c.last.Wall {
		c.last = HLC{Wall: pt}
	} else {
		c.last.Logical++
	}
	first := c.last
	c.last.Logical += uint32(n - 1)
	c.mu.Unlock()
	return first
}

// Update merges a timestamp received from a peer and returns a new local
// timestamp after both. It refuses (ErrClockOffset) a remote timestamp
// further ahead of the local physical clock than the maximum offset, and
// leaves the clock unchanged then.
func (c *Clock) Update(remote HLC) (HLC, error) {
	pt := c.physical()
	if ahead := time.Duration(remote.Wall - pt); ahead > c.maxOffset {
		return HLC{}, fmt.Errorf("%w: %v > %v", ErrClockOffset, ahead, c.maxOffset)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	last := c.last
	switch {
	case pt > last.Wall && pt > remote.Wall:
		c.last = HLC{Wall: pt}
	case last.Wall == remote.Wall:
		c.last = HLC{Wall: last.Wall, Logical: max(last.Logical, remote.Logical) + 1}
	case last.Wall > remote.Wall:
		c.last.Logical++
	default:
		c.last = HLC{Wall: remote.Wall, Logical: remote.Logical + 1}
	}
	return c.last, nil
}
