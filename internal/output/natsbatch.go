package output

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/semprop/semprop/event"
)

// JetStream fast batch publishing (nats-server 2.14 and later, on a
// stream with allow_batched): the publishes of a batch carry their
// position in the batch in the reply subject,
//
//	<inbox>.<batch id>.<flow>.fail.<batch seq>.<operation>.$FI
//
// and the stream answers with a flow ack every <flow> messages at most
// ({"type":"ack","seq":N}: every message of the batch up to N is stored
// or was a duplicate of a stored one) instead of a publish ack per
// message. The sink keeps one batch open on its connection and appends
// the events of every Start to it; it ends the batch (an end-of-batch
// commit, which stores nothing) when a wait could not otherwise be
// answered, and the stream answers the commit with a publish ack
// counting the messages of the batch it stored.
//
// The guarantees of the per-message path hold:
//   - Nats-Msg-Id is checked for every message of a fast batch: a
//     duplicate is skipped, not stored, and counts as stored in the acks.
//   - In "fail" gap mode, a message the stream refuses (or misses) ends
//     the batch: what the stream stored of a batch is a prefix of it, and
//     the final publish ack says how long. Messages sent after the end are
//     dropped by the stream, so the events after a refused one are stored
//     after it is dealt with, in order.
//   - A new batch is opened only once the previous one's final ack is in:
//     two batches never race, so what the stream stored of everything
//     sent is a prefix too.
const (
	opStart     = "0"
	opAppend    = "1"
	opCommitEOB = "3"
	fastSuffix  = ".$FI"
	maxFastFlow = 500 // the server's bound on messages per flow ack
)

// JetStream error codes of the batch protocol itself: the stream does not
// take fast batches (disabled, or a subject captured by another stream).
const (
	errCodeBatchDisabled = 10205
	errCodeBatchPattern  = 10206
	errCodeBatchUnknown  = 10208
)

var (
	errBatchEnded  = errors.New("nats: the stream ended the batch early")
	errBatchClosed = errors.New("nats: the batch was ended after a failed publish")
)

// fastFlow is the flow (messages per flow ack) the sink asks for: half a
// batch, so that the events of full batches behind a batch always bring
// its ack.
func fastFlow(batchSize int) int {
	return min(max(batchSize/2, 1), maxFastFlow)
}

// natsBatch is the fast batch open on a connection.
type natsBatch struct {
	id    string
	reply string // prefix of the reply subjects: inbox.id.flow.fail.
	buf   []byte // fastReply's, reused
	done  chan struct{}

	// Used by the sink's goroutine only:
	sent      uint64 // batch seq of the last message published
	subject   string // subject of the last message published
	committed bool   // the end of batch was sent
	broken    error  // a publish failed: the batch takes no more events

	// guarded by natsConn.mu:
	acked   uint64        // every message up to this batch seq is stored
	final   bool          // the final publish ack is in (or the batch is gone)
	count   uint64        // what the final ack says was stored
	errSeq  uint64        // the first message the stream refused
	errAt   error         // and why
	flights []*natsFlight // waiting for their acks, in order
}

// fastReply is the reply subject of the message at seq: one allocation.
func (b *natsBatch) fastReply(seq uint64, op string) string {
	buf := append(b.buf[:0], b.reply...)
	buf = strconv.AppendUint(buf, seq, 10)
	buf = append(buf, '.')
	buf = append(buf, op...)
	buf = append(buf, fastSuffix...)
	b.buf = buf
	return string(buf)
}

// detectFast asks the server whether the stream capturing subject takes
// fast batches.
func (s *natsSink) detectFast(nc *nats.Conn, subject string) bool {
	if s.cfg.BatchPublish == BatchPublishOff || s.fastOff.Load() {
		return false
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(s.cfg.AckTimeout, 5*time.Second))
	defer cancel()
	name, err := js.StreamNameBySubject(ctx, subject)
	if err != nil {
		s.log.Debug("output: no stream info; publishing one ack per message", "err", err)
		return false
	}
	st, err := js.Stream(ctx, name)
	if err != nil {
		s.log.Debug("output: no stream info; publishing one ack per message", "stream", name, "err", err)
		return false
	}
	return st.CachedInfo().Config.AllowBatchPublish
}

// startFast publishes evs into the open fast batch, opening one when
// there is none.
func (s *natsSink) startFast(ctx context.Context, c *natsConn, evs []*event.Event) func(context.Context) error {
	f := &natsFlight{s: s, c: c, fast: true, deadline: time.Now().Add(s.cfg.AckTimeout), done: make(chan struct{}),
		acked: make([]bool, len(evs))}
	b := c.batch
	if b != nil && b.broken != nil {
		// A publish failed: nothing more goes out before the failed
		// flight is dealt with.
		f.fastFinish(&partialError{err: b.broken})
		return f.wait
	}
	c.mu.Lock()
	final := b != nil && b.final
	c.mu.Unlock()
	if b != nil && (b.committed || final) {
		// The previous batch must be done with before a new one starts:
		// two batches would race.
		t := time.NewTimer(s.cfg.AckTimeout)
		select {
		case <-b.done:
		case <-t.C:
			c.fail(fmt.Errorf("nats: no publish ack within %v", s.cfg.AckTimeout))
		case <-ctx.Done():
		}
		t.Stop()
		c.mu.Lock()
		ended := b.final && b.count < b.sent
		c.mu.Unlock()
		if ended {
			// The stream ended it early: a flight of it failed, and
			// this one must wait for its events to be sent again.
			f.fastFinish(&partialError{err: errBatchEnded})
			return f.wait
		}
		b = nil
	}
	c.mu.Lock()
	if c.err != nil || ctx.Err() != nil {
		err := c.err
		if err == nil {
			err = ctx.Err()
		}
		c.mu.Unlock()
		f.fastFinish(err)
		return f.wait
	}
	if b == nil {
		id := strings.TrimPrefix(nats.NewInbox(), nats.InboxPrefix)
		b = &natsBatch{id: id, reply: c.fastPrefix + id + "." + strconv.Itoa(s.flow) + ".fail.", done: make(chan struct{})}
		c.batch = b
	}
	f.b, f.first, f.last = b, b.sent+1, b.sent+uint64(len(evs))
	b.flights = append(b.flights, f)
	c.mu.Unlock()
	for i, ev := range evs {
		seq := b.sent + 1
		op := opAppend
		if seq == 1 {
			op = opStart
		}
		if err := s.publish(c, ev, b.fastReply(seq, op)); err != nil {
			// The events after it would not keep the order: end the
			// batch after what was published; its final ack says what
			// of this flight is stored, ev is refused.
			b.broken = errBatchClosed
			c.mu.Lock()
			f.last = b.sent
			f.refuseLocked(i, err)
			c.mu.Unlock()
			s.commitFast(c, b)
			return f.wait
		}
		b.sent, b.subject = seq, s.msg.Subject
	}
	return f.wait
}

// commitFast ends batch b: the stream answers with the final publish ack
// once everything before is stored.
func (s *natsSink) commitFast(c *natsConn, b *natsBatch) {
	if b.committed {
		return
	}
	b.committed = true
	if b.sent == 0 {
		// Nothing was published: there is no batch on the server.
		c.mu.Lock()
		b.finalLocked(0)
		c.mu.Unlock()
		return
	}
	m := nats.Msg{Subject: b.subject, Reply: b.fastReply(b.sent+1, opCommitEOB)}
	if err := c.nc.PublishMsg(&m); err != nil {
		c.fail(fmt.Errorf("nats: end batch: %w", err))
	}
}

// needsCommit reports whether f's acks can come only from the end of its
// batch: the stream sends a flow ack at least every s.flow messages it
// stores, so one covering f comes once flow-1 messages follow it.
func (s *natsSink) needsCommit(f *natsFlight) bool {
	b := f.b
	return !b.committed && b.sent < f.last+uint64(s.flow)-1
}

// fastFinish ends a flight of a fast batch with its outcome.
func (f *natsFlight) fastFinish(res error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	f.fastFinishLocked(res)
}

func (f *natsFlight) fastFinishLocked(res error) {
	if f.finished {
		return
	}
	f.res = res
	f.finishLocked(nil)
}

// fastResultLocked is the outcome of a finished flight of a fast batch.
func (f *natsFlight) fastResultLocked() error {
	if f.err == nil {
		return f.res
	}
	// The connection failed: what the flow acks confirmed stands.
	done := 0
	if f.b != nil && f.b.acked >= f.first {
		done = int(min(f.b.acked, f.last) - f.first + 1)
	}
	if done == len(f.acked) && f.refusal == nil {
		return nil
	}
	if f.refusal != nil && f.refuseAt == done {
		return &partialError{done: done, err: f.refusal}
	}
	return &partialError{done: done, err: f.err}
}

// ackedLocked records that every message up to seq is stored, and
// finishes the flights that covers.
func (b *natsBatch) ackedLocked(seq uint64) {
	if seq <= b.acked || b.final {
		return
	}
	b.acked = seq
	n := 0
	for _, f := range b.flights {
		if f.last > seq || f.refusal != nil {
			break
		}
		f.fastFinishLocked(nil)
		n++
	}
	b.flights = b.flights[n:]
}

// finalLocked ends the batch: the stream stored its messages up to
// count, and no more.
func (b *natsBatch) finalLocked(count uint64) {
	if b.final {
		return
	}
	b.final, b.count = true, count
	b.acked = max(b.acked, count)
	for _, f := range b.flights {
		if f.last <= count && f.refusal == nil {
			f.fastFinishLocked(nil)
			continue
		}
		done := 0
		if count >= f.first {
			done = int(min(count, f.last) - f.first + 1)
		}
		var err error
		switch {
		case f.refusal != nil && f.refuseAt == done:
			err = f.refusal
		case b.errAt != nil && b.errSeq == f.first+uint64(done):
			err = b.errAt
		default:
			err = fmt.Errorf("%w after message %d", errBatchEnded, count)
		}
		f.fastFinishLocked(&partialError{done: done, err: err})
	}
	b.flights = nil
	close(b.done)
}

// failLocked ends the batch with the connection's failure.
func (b *natsBatch) failLocked(err error) {
	if b.final {
		return
	}
	b.final = true
	for _, f := range b.flights {
		f.finishLocked(err)
	}
	b.flights = nil
	close(b.done)
}

// fastAnswer is any answer of the stream to a fast batch message.
type fastAnswer struct {
	Type   string `json:"type"` // "ack", "gap", "err"; empty in a publish ack
	Seq    uint64 `json:"seq"`
	Stream string `json:"stream"`
	Batch  string `json:"batch"`
	Count  uint64 `json:"count"`
	Error  *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// onFastReply takes an answer on the fast batch replies: a flow ack, a
// gap or error notice, the final publish ack or a refusal.
func (c *natsConn) onFastReply(m *nats.Msg) {
	id, seq, ok := parseFastReply(strings.TrimPrefix(m.Subject, c.fastPrefix))
	if !ok {
		return
	}
	a, ansErr := parseFastAnswer(m.Data, m.Header)
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.batch
	if b == nil || b.id != id || b.final {
		return
	}
	if a.Error != nil {
		switch a.Error.ErrCode {
		case errCodeBatchDisabled, errCodeBatchPattern, errCodeBatchUnknown:
			// The stream does not take this batch, though it is open
			// here: it is not one stream capturing every subject, or
			// fast batches were turned off.
			c.s.fastOff.Store(true)
		}
	}
	switch {
	case a.Type == "ack":
		b.ackedLocked(a.Seq)
	case a.Type == "gap":
		// Informational; the final ack follows.
	case a.Type == "err":
		if a.Error != nil && (b.errAt == nil || a.Seq < b.errSeq) {
			b.errSeq, b.errAt = a.Seq, ansErr
		}
	case ansErr != nil:
		if b.errAt == nil || seq < b.errSeq {
			b.errSeq, b.errAt = seq, ansErr
		}
		if seq == 1 {
			// The batch never started on the server.
			b.finalLocked(0)
		}
	case a.Batch == b.id:
		c.s.fastBatches.Add(1)
		b.finalLocked(a.Count)
	}
}

// parseFastAnswer decodes an answer to a fast batch message (with header
// h): its error is the stream's refusal, no responders, or errBadAck.
func parseFastAnswer(data []byte, h nats.Header) (a fastAnswer, err error) {
	if len(data) == 0 {
		if h.Get("Status") == "503" {
			return a, errNoResponders
		}
		return a, errBadAck
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return fastAnswer{}, fmt.Errorf("%w: %v", errBadAck, err)
	}
	if a.Error != nil {
		err = fmt.Errorf("nats: stream error %d (%d): %s", a.Error.Code, a.Error.ErrCode, a.Error.Description)
		if a.Error.ErrCode == errCodeTooLarge {
			err = fmt.Errorf("%w: %w", ErrRejected, err)
		}
	}
	return a, err
}

// parseFastReply returns the batch id and seq of a reply subject, less
// the inbox prefix: id.flow.fail.seq.op.$FI.
func parseFastReply(s string) (id string, seq uint64, ok bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 6 || parts[5] != "$FI" {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(parts[3], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return parts[0], seq, true
}
