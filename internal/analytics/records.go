package analytics

import (
	"context"
	"fmt"
	"time"

	"github.com/semprop/semprop/event"
)

// RecordSource is a Source that can also hand out the durable events in
// their binary form (event.Event.AppendBinary) without decoding them:
// *propagate.Reader implements it. An engine without token views reads
// through it and decodes only the fields its aggregates use, allocating
// nothing for keys it has seen lately. payload is valid until the next
// call.
type RecordSource interface {
	Source
	NextRecord(ctx context.Context) (seq uint64, payload []byte, err error)
	TryNextRecord() (seq uint64, payload []byte, ok bool, err error)
}

// zeroSec and zeroNs are the event time of an event without one, as
// event.Event.Time reads then.
var zeroSec, zeroNs = time.Time{}.Unix(), time.Time{}.UnixNano()

// recordKeys turns the keys of binary records into strings: the type and
// process of the last record (runs of them are the rule), and the rest
// through a bounded cache.
type recordKeys struct {
	typ, comm string
	uid       uint32
	uidKey    string
	hasUID    bool
	cache     internCache
}

// runRecords is Run's loop over a RecordSource.
func (e *Engine) runRecords(ctx context.Context, src RecordSource) error {
	var r recordView
	for {
		if err := e.applyNextRecords(ctx, src, &r); err != nil {
			if ctx.Err() != nil {
				e.checkpoint()
				return ctx.Err()
			}
			return err
		}
	}
}

// applyNextRecords is applyNext over a RecordSource; r is scratch space.
func (e *Engine) applyNextRecords(ctx context.Context, src RecordSource, r *recordView) error {
	seq, rec, err := src.NextRecord(ctx)
	if err != nil {
		return fmt.Errorf("analytics: read: %w", err)
	}
	e.mu.Lock()
	e.nowSec = e.now().Unix()
	if err := e.applyRecordLocked(seq, rec, r); err != nil {
		e.mu.Unlock()
		return err
	}
	// Drain what is already durable under one lock.
	for range 255 {
		seq, rec, ok, err := src.TryNextRecord()
		if err == nil && ok {
			err = e.applyRecordLocked(seq, rec, r)
		}
		if err != nil {
			e.mu.Unlock()
			return fmt.Errorf("analytics: read: %w", err)
		}
		if !ok {
			break
		}
	}
	e.endBatch()
	return nil
}

// applyRecordLocked updates the aggregates with the durable event seq in
// its binary form rec (r is scratch space): what applyLocked does for an
// engine without token views.
func (e *Engine) applyRecordLocked(seq uint64, rec []byte, r *recordView) error {
	if err := r.decode(rec); err != nil {
		return fmt.Errorf("analytics: journal seq %d: %w", seq, err)
	}
	sec, ns := r.eventTime()
	var s sample
	e.beginLocked(&s, seq, sec, ns)
	e.sampleOfRecord(r, &s)
	e.all.add(&s)
	if e.applyHook != nil {
		e.applyHook(seq)
	}
	return nil
}

// sampleOfRecord is sampleOf for a binary record.
func (e *Engine) sampleOfRecord(r *recordView, s *sample) {
	k := e.keys
	if k == nil {
		k = new(recordKeys)
		e.keys = k
	}
	if unsafeString(r.typ) != k.typ {
		k.typ, _ = k.cache.get(r.typ)
	}
	s.typ = k.typ
	if len(r.subject) > 0 {
		s.path, s.hash = k.cache.get(r.subject)
	}
	s.dir, s.depth = "", e.cfg.DirDepth
	switch {
	case len(r.comm) == 0:
		s.comm = unknownKey
	case unsafeString(r.comm) == k.comm:
		s.comm = k.comm
	default:
		k.comm, _ = k.cache.get(r.comm)
		s.comm = k.comm
	}
	if r.has(event.HasUID) {
		if !k.hasUID || r.uid != k.uid {
			k.uid, k.uidKey, k.hasUID = r.uid, e.uids.key(r.uid), true
		}
		s.uid = k.uidKey
	} else {
		s.uid = unknownKey
	}
	switch {
	case r.has(event.HasBytes) && r.bytes > 0:
		s.bytes = r.bytes
		s.write = true
	case s.typ == "fs.write" && r.has(event.HasSize) && r.size > 0:
		// As in sampleOf: the file's size after a write the boundary did
		// not count.
		s.bytes = r.size
		s.write = true
	}
	e.sizeBinOf(s)
}

// eventTime returns the event time in Unix seconds and Unix ns, as
// event.Event.Time's Unix and UnixNano read.
func (r *recordView) eventTime() (sec, ns int64) {
	if !r.hasTime {
		return zeroSec, zeroNs
	}
	sec = r.time / 1e9
	if r.time%1e9 < 0 {
		sec-- // time.Unix(0, ns).Unix() rounds down
	}
	return sec, r.time
}
