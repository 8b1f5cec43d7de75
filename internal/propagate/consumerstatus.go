package propagate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
)

// ConsumerStatus describes the durable consumer name, open or not: its
// cursor, its counters (persisted with the cursor, so they survive a
// restart), how far it lags the journal's durable head and its backlog,
// the events after its cursor that match and are not acked. An open
// consumer counts with its own matcher; a closed one with match (nil
// matches every event), which should be the matcher it is opened with.
// Counting the backlog reads at most limit records of the journal (0: no
// limit; negative: it is not counted); past that, BacklogCapped is set
// and Backlog is a lower bound.
// Safe for concurrent use; it does not hold the consumer while it reads.
func (m *Manager) ConsumerStatus(name string, match Matcher, limit int) (ConsumerInfo, error) {
	var info ConsumerInfo
	if !consumerName.MatchString(name) {
		return info, fmt.Errorf("%w: %q", ErrNoConsumer, name)
	}
	m.consumerMu.Lock()
	c := m.consumers[name]
	m.consumerMu.Unlock()
	var acked map[uint64]struct{}
	if c != nil {
		c.mu.Lock()
		info = c.stats
		info.AckFloor = c.floorLocked()
		info.Pending = len(c.pending)
		info.Open = !c.closed
		info.Cursor = c.readPos - 1
		acked = make(map[uint64]struct{}, len(c.acked))
		for s := range c.acked {
			if s > info.Cursor {
				acked[s] = struct{}{}
			}
		}
		match = c.opts.Matcher
		c.mu.Unlock()
	} else {
		st, err := loadState(filepath.Join(m.dir, "consumers", name+".json"))
		if errors.Is(err, os.ErrNotExist) {
			return info, fmt.Errorf("%w: %s", ErrNoConsumer, name)
		}
		if err != nil {
			return info, err
		}
		info.setCounters(st.Counters)
		info.AckFloor, info.Cursor = st.Floor, st.Floor
		acked = make(map[uint64]struct{}, len(st.Acked))
		for _, s := range st.Acked {
			acked[s] = struct{}{}
		}
	}
	info.Name = name
	info.Head = m.j.DurableSeq()
	info.Lag = info.Head - min(info.Cursor, info.Head)
	if match == nil {
		match = MatchAll
	}
	if limit < 0 {
		return info, nil
	}
	n, capped, err := m.backlog(info.Cursor+1, info.Head, match, acked, limit)
	info.Backlog, info.BacklogCapped = n, capped
	return info, err
}

// backlog counts the records from..to that match and are not in acked,
// reading at most limit records (0: no limit).
func (m *Manager) backlog(from, to uint64, match Matcher, acked map[uint64]struct{}, limit int) (n uint64, capped bool, err error) {
	if from > to {
		return 0, false, nil
	}
	r, err := m.j.Reader(from)
	var te *journal.TruncatedError
	if errors.As(err, &te) {
		r, err = m.j.Reader(te.First) // the lost ones will never be delivered
	}
	if err != nil {
		return 0, false, fmt.Errorf("propagate: consumer backlog: %w", err)
	}
	defer r.Close()
	var ev event.Event
	for read := 0; ; read++ {
		if limit > 0 && read >= limit {
			return n, true, nil
		}
		seq, payload, ok, err := r.TryNext()
		if errors.As(err, &te) {
			continue // retention passed the reader: it resumes at the first retained
		}
		if err != nil {
			return n, false, fmt.Errorf("propagate: consumer backlog: %w", err)
		}
		if !ok || seq > to {
			return n, false, nil
		}
		if _, done := acked[seq]; done {
			continue
		}
		ev = event.Event{}
		if err := decodeRecord(seq, payload, &ev); err != nil {
			return n, false, err
		}
		if match.Match(&ev) {
			n++
		}
	}
}
