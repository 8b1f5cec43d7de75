package propagate

import (
	"fmt"
	"time"

	"github.com/semprop/semprop/event"
)

// SeqBefore returns the seq after which the durable events at or after t
// begin: a read "after" it starts with the first event of time t or later
// (e.g. the last 10 minutes). It is a binary search over the retained
// durable seqs that decodes O(log n) events, not a scan.
//
// An event's time here is its HLC wall time (the daemon's clock, which
// grows with seq on one instance), or its Time when it has no HLC. Times
// that are not monotonic in seq order (producer-supplied times, clocks of
// several cluster members) make the answer one boundary where an event
// before t is followed by one at or after t, not necessarily the first
// such; the result is always a retained position, never an error for
// that. When every event is older than t the answer is the durable end
// (new events only); when none is, the seq before the first retained.
func (m *Manager) SeqBefore(t time.Time) (uint64, error) {
	lo, hi := m.j.FirstSeq(), m.j.DurableSeq()
	if hi < lo {
		return hi, nil // empty journal
	}
	at := t.UnixNano()
	var ev event.Event
	timeOf := func(seq uint64) (int64, error) {
		rd, err := m.j.Reader(seq)
		if err != nil {
			return 0, err
		}
		defer rd.Close()
		s, payload, ok, err := rd.TryNext()
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, fmt.Errorf("propagate: seq %d is not readable", seq)
		}
		if err := decodeRecord(s, payload, &ev); err != nil {
			return 0, err
		}
		if ev.HLC.Wall != 0 {
			return ev.HLC.Wall, nil
		}
		return ev.Time.UnixNano(), nil
	}
	// Invariant: every seq < lo is before t (or lo is the first retained);
	// every seq > hi is at or after t (or hi is the end).
	first := lo
	end := hi
	for lo <= hi {
		mid := lo + (hi-lo)/2
		tm, err := timeOf(mid)
		if err != nil {
			return 0, fmt.Errorf("propagate: find time: %w", err)
		}
		if tm < at {
			lo = mid + 1
		} else {
			if mid == 0 {
				break
			}
			hi = mid - 1
		}
	}
	// lo is the first seq at or after t (end+1: none).
	if lo > end {
		return end, nil
	}
	if lo < first {
		lo = first
	}
	return lo - 1, nil
}
