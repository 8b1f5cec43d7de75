package propagate

import "context"

// NextRecord is Next without decoding: it returns the next durable
// event's seq and its binary form (event.Event.AppendBinary; its own Seq
// field is not the journal's, seq is), waiting for one until ctx is done.
// payload is valid until the next call on r. It lets an in-process reader
// that uses a few fields of each event (the analytics engine) decode only
// those.
func (r *Reader) NextRecord(ctx context.Context) (seq uint64, payload []byte, err error) {
	seq, payload, err = r.r.Next(ctx)
	if err != nil {
		return 0, nil, err
	}
	r.took(seq)
	return seq, payload, nil
}

// TryNextRecord is NextRecord without blocking: ok is false when no
// further durable event exists yet.
func (r *Reader) TryNextRecord() (seq uint64, payload []byte, ok bool, err error) {
	seq, payload, ok, err = r.r.TryNext()
	if err != nil || !ok {
		return 0, nil, false, err
	}
	r.took(seq)
	return seq, payload, true, nil
}
