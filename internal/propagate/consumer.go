package propagate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/journal"
)

// ConsumerOptions configure a durable consumer.
type ConsumerOptions struct {
	Name          string        // [a-zA-Z0-9_-]{1,100}; the cursor is stored under this name
	Matcher       Matcher       // nil matches every event
	AckWait       time.Duration // redeliver an unacked event after this; default 30s
	MaxDeliver    int           // deliveries before dead-lettering; default 5
	MaxAckPending int           // unacked events in flight; default 1000
	// MaxDeadLetters bounds the dead letters kept in the consumer's state
	// (the newest are kept); default 100.
	MaxDeadLetters int
	// StartSeq is where a new consumer starts (0 or 1: the beginning). A
	// consumer that already has a stored cursor resumes from it instead.
	StartSeq uint64
	// Meta is stored with the cursor for the caller (e.g. the selector a
	// consumer was created with) and returned by ConsumerMeta. A consumer
	// that already exists keeps its stored Meta when this is nil.
	Meta json.RawMessage
}

// Delivery is one event handed to a durable consumer.
type Delivery struct {
	Event   *event.Event
	Seq     uint64
	Attempt int // 1 on first delivery
}

// Consumer is a named durable consumer: it reads matching durable events
// from the journal from a persisted cursor, at least once. Each event must be
// acknowledged with Ack; an event not acked within AckWait is delivered
// again, and after MaxDeliver deliveries it is acknowledged on the
// consumer's behalf and recorded as a DeadLetter in the consumer's own
// state: the newest MaxDeadLetters of them, persisted with the cursor (see
// DeadLetters). Dead letters are never written to the journal, so a reader
// that never acknowledges cannot make the journal grow.
// Cursors are persisted (at most every 100 ms and on Close) and survive a
// restart; acks not yet persisted at a crash mean redeliveries, never loss.
//
// A Consumer is safe for concurrent use; Next calls are serialized.
type Consumer struct {
	m    *Manager
	opts ConsumerOptions
	path string

	nextMu sync.Mutex // serializes Next

	mu       sync.Mutex
	r        *journal.Reader
	readPos  uint64              // next seq the reader returns
	pending  map[uint64]*pending // delivered, not acked
	order    []uint64            // pending seqs by deadline (lazy: acked ones are skipped)
	acked    map[uint64]struct{} // acked above the floor
	dirty    bool
	lastSave time.Time
	stats    ConsumerInfo
	dead     []DeadLetter // newest last, at most opts.MaxDeadLetters
	deadLog  time.Time    // last dead-letter log line (at most one a second)
	closed   bool
}

// DeadLetter records an event a durable consumer gave up on after
// MaxDeliver deliveries. It names the event (read it again by its seq) and
// does not copy it.
type DeadLetter struct {
	Seq        uint64    `json:"seq"`
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	Deliveries int       `json:"deliveries"`
	Time       time.Time `json:"time"` // when it was given up
}

type pending struct {
	ev       *event.Event
	attempt  int
	deadline time.Time
}

// ConsumerInfo describes a durable consumer. The counters are kept with
// the cursor, so they survive a restart (up to the last persisted save).
type ConsumerInfo struct {
	Name         string `json:"name"`
	AckFloor     uint64 `json:"ack_floor"` // every seq up to here is acked (or not matching)
	Pending      int    `json:"pending"`   // delivered, not acked
	Delivered    uint64 `json:"delivered"`
	Redelivered  uint64 `json:"redelivered"`
	Acked        uint64 `json:"acked"`
	DeadLettered uint64 `json:"dead_lettered"`
	Gaps         uint64 `json:"gaps"` // events lost to retention before this consumer read them

	// Open says the consumer is open in this process now (Pending counts
	// only then: a closed consumer's unacked events are redelivered when
	// it opens).
	Open bool `json:"open"`
	// Cursor is the last seq the consumer has read (delivered or skipped
	// as not matching); Head the journal's durable seq when the info was
	// taken; Lag is Head - Cursor, events not read yet, matching or not.
	Cursor uint64 `json:"cursor"`
	Head   uint64 `json:"head"`
	Lag    uint64 `json:"lag"`
	// Backlog counts the events after Cursor, up to Head, that match the
	// consumer's selector and are not acked: what it has still to deliver
	// for the first time. Counting reads the journal; when the count was
	// stopped at its limit, BacklogCapped is set and Backlog is a lower
	// bound. Only ConsumerStatus fills it in.
	Backlog       uint64 `json:"backlog"`
	BacklogCapped bool   `json:"backlog_capped,omitempty"`
}

// consumerCounters are the counters persisted with a consumer's cursor.
type consumerCounters struct {
	Delivered    uint64 `json:"delivered,omitempty"`
	Redelivered  uint64 `json:"redelivered,omitempty"`
	Acked        uint64 `json:"acked,omitempty"`
	DeadLettered uint64 `json:"dead_lettered,omitempty"`
	Gaps         uint64 `json:"gaps,omitempty"`
}

type consumerState struct {
	Floor       uint64           `json:"floor"`
	Acked       []uint64         `json:"acked,omitempty"`
	Meta        json.RawMessage  `json:"meta,omitempty"`
	DeadLetters []DeadLetter     `json:"dead_letters,omitempty"`
	Counters    consumerCounters `json:"counters"`
}

// counters returns the persisted part of info.
func (info ConsumerInfo) counters() consumerCounters {
	return consumerCounters{Delivered: info.Delivered, Redelivered: info.Redelivered, Acked: info.Acked,
		DeadLettered: info.DeadLettered, Gaps: info.Gaps}
}

// setCounters restores the persisted counters into info.
func (info *ConsumerInfo) setCounters(cs consumerCounters) {
	info.Delivered, info.Redelivered, info.Acked = cs.Delivered, cs.Redelivered, cs.Acked
	info.DeadLettered, info.Gaps = cs.DeadLettered, cs.Gaps
}

var consumerName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,100}$`)

// Consumer opens the durable consumer opts.Name, creating it if needed. A
// consumer can be open once at a time (ErrBusy otherwise).
func (m *Manager) Consumer(opts ConsumerOptions) (*Consumer, error) {
	if m.dir == "" {
		return nil, errors.New("propagate: durable consumers need Options.Dir")
	}
	if !consumerName.MatchString(opts.Name) {
		return nil, fmt.Errorf("propagate: consumer name %q: want 1-100 of [a-zA-Z0-9_-]", opts.Name)
	}
	if opts.Matcher == nil {
		opts.Matcher = MatchAll
	}
	if opts.AckWait <= 0 {
		opts.AckWait = 30 * time.Second
	}
	if opts.MaxDeliver <= 0 {
		opts.MaxDeliver = 5
	}
	if opts.MaxAckPending <= 0 {
		opts.MaxAckPending = 1000
	}
	if opts.MaxDeadLetters <= 0 {
		opts.MaxDeadLetters = 100
	}
	m.consumerMu.Lock()
	defer m.consumerMu.Unlock()
	select {
	case <-m.closed:
		return nil, ErrClosed
	default:
	}
	if _, ok := m.consumers[opts.Name]; ok {
		return nil, fmt.Errorf("%w: %s", ErrBusy, opts.Name)
	}
	c := &Consumer{
		m: m, opts: opts, path: filepath.Join(m.dir, "consumers", opts.Name+".json"),
		pending: make(map[uint64]*pending), acked: make(map[uint64]struct{}),
	}
	c.stats.Name = opts.Name
	st, err := loadState(c.path)
	switch {
	case err == nil:
		c.readPos = st.Floor + 1
		for _, s := range st.Acked {
			c.acked[s] = struct{}{}
		}
		if c.opts.Meta == nil {
			c.opts.Meta = st.Meta
		}
		c.dead = st.DeadLetters
		c.stats.setCounters(st.Counters)
		if n := len(c.dead) - c.opts.MaxDeadLetters; n > 0 {
			c.dead = c.dead[n:]
		}
	case errors.Is(err, os.ErrNotExist):
		c.readPos = max(opts.StartSeq, 1)
		c.dirty = true
	default:
		return nil, err
	}
	if err := c.openReaderLocked(); err != nil {
		return nil, err
	}
	if err := c.saveLocked(); err != nil {
		return nil, err
	}
	m.consumers[opts.Name] = c
	return c, nil
}

// DeleteConsumer removes a durable consumer's stored cursor. An open
// consumer is closed first.
func (m *Manager) DeleteConsumer(name string) error {
	if !consumerName.MatchString(name) {
		return fmt.Errorf("%w: %q", ErrNoConsumer, name)
	}
	m.consumerMu.Lock()
	c := m.consumers[name]
	m.consumerMu.Unlock()
	if c != nil {
		_ = c.Close()
	}
	err := os.Remove(filepath.Join(m.dir, "consumers", name+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNoConsumer, name)
	}
	return err
}

// ConsumerMeta returns the Meta stored with a durable consumer.
func (m *Manager) ConsumerMeta(name string) (json.RawMessage, error) {
	if !consumerName.MatchString(name) {
		return nil, fmt.Errorf("%w: %q", ErrNoConsumer, name)
	}
	st, err := loadState(filepath.Join(m.dir, "consumers", name+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoConsumer, name)
	}
	return st.Meta, err
}

// ConsumerDeadLetters returns the dead letters of a durable consumer, open
// or not, oldest first.
func (m *Manager) ConsumerDeadLetters(name string) ([]DeadLetter, error) {
	if !consumerName.MatchString(name) {
		return nil, fmt.Errorf("%w: %q", ErrNoConsumer, name)
	}
	m.consumerMu.Lock()
	c := m.consumers[name]
	m.consumerMu.Unlock()
	if c != nil {
		return c.DeadLetters(), nil
	}
	st, err := loadState(filepath.Join(m.dir, "consumers", name+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoConsumer, name)
	}
	return st.DeadLetters, err
}

// ConsumerNames lists the stored durable consumers.
func (m *Manager) ConsumerNames() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(m.dir, "consumers"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if n, ok := cutSuffix(e.Name(), ".json"); ok && consumerName.MatchString(n) {
			names = append(names, n)
		}
	}
	return names, nil
}

func cutSuffix(s, suf string) (string, bool) {
	if len(s) > len(suf) && s[len(s)-len(suf):] == suf {
		return s[:len(s)-len(suf)], true
	}
	return s, false
}

func loadState(path string) (consumerState, error) {
	var st consumerState
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("propagate: consumer state %s: %w", path, err)
	}
	return st, nil
}

func (c *Consumer) openReaderLocked() error {
	r, err := c.m.j.Reader(c.readPos)
	var te *journal.TruncatedError
	if errors.As(err, &te) {
		c.m.log.Warn("durable consumer fell behind retention", "consumer", c.opts.Name, "from", c.readPos, "first", te.First)
		c.stats.Gaps += te.First - c.readPos
		c.readPos = te.First
		r, err = c.m.j.Reader(c.readPos)
	}
	if err != nil {
		return fmt.Errorf("propagate: consumer %s: %w", c.opts.Name, err)
	}
	c.r = r
	return nil
}

// floorLocked is the highest seq below which everything is acked.
func (c *Consumer) floorLocked() uint64 {
	low := c.readPos
	for s := range c.pending {
		low = min(low, s)
	}
	return low - 1
}

func (c *Consumer) saveLocked() error {
	floor := c.floorLocked()
	st := consumerState{Floor: floor, Meta: c.opts.Meta, DeadLetters: c.dead, Counters: c.stats.counters()}
	for s := range c.acked {
		if s <= floor {
			delete(c.acked, s)
		} else {
			st.Acked = append(st.Acked, s)
		}
	}
	slices.Sort(st.Acked)
	b, _ := json.Marshal(st)
	tmp := c.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("propagate: save consumer %s: %w", c.opts.Name, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, c.path)
	}
	if err != nil {
		return fmt.Errorf("propagate: save consumer %s: %w", c.opts.Name, err)
	}
	c.dirty = false
	c.lastSave = time.Now()
	return nil
}

// Next returns the next delivery: a redelivery whose ack wait expired, or
// the next matching durable event. It waits until one exists or ctx is done.
func (c *Consumer) Next(ctx context.Context) (Delivery, error) {
	c.nextMu.Lock()
	defer c.nextMu.Unlock()
	for {
		d, wait, changed, err := c.poll(ctx)
		if err != nil || d.Event != nil {
			return d, err
		}
		var t *time.Timer
		var timer <-chan time.Time
		if wait > 0 {
			t = time.NewTimer(wait)
			timer = t.C
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-c.m.closed:
			err = ErrClosed
		case <-changed:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
		if err != nil {
			return Delivery{}, err
		}
	}
}

// Fetch returns up to max deliveries: it waits for the first as Next does,
// then takes what is ready without waiting.
func (c *Consumer) Fetch(ctx context.Context, max int) ([]Delivery, error) {
	d, err := c.Next(ctx)
	if err != nil {
		return nil, err
	}
	out := []Delivery{d}
	c.nextMu.Lock()
	defer c.nextMu.Unlock()
	for len(out) < max {
		d, _, _, err := c.poll(ctx)
		if err != nil || d.Event == nil {
			break
		}
		out = append(out, d)
	}
	return out, nil
}

// Name returns the consumer's name.
func (c *Consumer) Name() string { return c.opts.Name }

// poll tries once to produce a delivery. If there is none it returns how
// long until the next redelivery is due (0: none pending) and a channel
// that is closed when new durable events arrive.
func (c *Consumer) poll(ctx context.Context) (d Delivery, wait time.Duration, changed <-chan struct{}, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return d, 0, nil, ErrClosed
	}
	now := time.Now()
	// Redeliveries first, oldest deadline first.
	for len(c.order) > 0 {
		s := c.order[0]
		p, ok := c.pending[s]
		if !ok {
			c.order = c.order[1:]
			continue
		}
		if p.deadline.After(now) {
			wait = p.deadline.Sub(now)
			break
		}
		c.order = c.order[1:]
		if p.attempt >= c.opts.MaxDeliver {
			delete(c.pending, s)
			c.acked[s] = struct{}{}
			c.dirty = true
			c.stats.DeadLettered++
			c.deadLetterLocked(s, p, now)
			continue
		}
		p.attempt++
		p.deadline = now.Add(c.opts.AckWait)
		c.order = append(c.order, s)
		c.stats.Delivered++
		c.stats.Redelivered++
		return Delivery{Event: p.ev, Seq: s, Attempt: p.attempt}, 0, nil, nil
	}
	changed = c.m.j.Changed()
	for len(c.pending) < c.opts.MaxAckPending {
		seq, payload, ok, rerr := c.r.TryNext()
		var te *journal.TruncatedError
		if errors.As(rerr, &te) {
			c.m.log.Warn("durable consumer fell behind retention", "consumer", c.opts.Name, "from", c.readPos, "first", te.First)
			c.stats.Gaps += te.First - c.readPos
			c.readPos = te.First
			continue
		}
		if rerr != nil {
			return d, 0, nil, fmt.Errorf("propagate: consumer %s: %w", c.opts.Name, rerr)
		}
		if !ok {
			break
		}
		c.readPos = seq + 1
		if _, done := c.acked[seq]; done {
			continue
		}
		ev := new(event.Event)
		if err := ev.UnmarshalBinary(payload); err != nil {
			return d, 0, nil, fmt.Errorf("propagate: consumer %s: seq %d: %w", c.opts.Name, seq, err)
		}
		ev.Seq = seq
		if !c.opts.Matcher.Match(ev) {
			c.dirty = true
			continue
		}
		c.pending[seq] = &pending{ev: ev, attempt: 1, deadline: now.Add(c.opts.AckWait)}
		c.order = append(c.order, seq)
		c.stats.Delivered++
		c.maybeSaveLocked()
		return Delivery{Event: ev, Seq: seq, Attempt: 1}, 0, nil, nil
	}
	c.maybeSaveLocked()
	return d, wait, changed, nil
}

// deadLetterLocked records that the consumer gave up on seq, keeping the
// newest opts.MaxDeadLetters records.
func (c *Consumer) deadLetterLocked(seq uint64, p *pending, now time.Time) {
	if len(c.dead) >= c.opts.MaxDeadLetters {
		c.dead = slices.Delete(c.dead, 0, len(c.dead)-c.opts.MaxDeadLetters+1)
	}
	c.dead = append(c.dead, DeadLetter{Seq: seq, ID: p.ev.ID.String(), Type: p.ev.Type, Deliveries: p.attempt, Time: now.UTC()})
	if now.Sub(c.deadLog) >= time.Second {
		c.deadLog = now
		c.m.log.Warn("dead-lettered an event", "consumer", c.opts.Name, "seq", seq, "type", p.ev.Type, "deliveries", p.attempt, "dead_lettered", c.stats.DeadLettered)
	}
}

// DeadLetters returns the consumer's dead letters, oldest first.
func (c *Consumer) DeadLetters() []DeadLetter {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.dead)
}

// Ack acknowledges seq. Acking a seq that is not pending is a no-op.
func (c *Consumer) Ack(seq uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if _, ok := c.pending[seq]; !ok {
		return nil
	}
	delete(c.pending, seq)
	c.acked[seq] = struct{}{}
	c.stats.Acked++
	c.dirty = true
	c.maybeSaveLocked()
	return nil
}

func (c *Consumer) maybeSaveLocked() {
	if c.dirty && time.Since(c.lastSave) >= 100*time.Millisecond {
		if err := c.saveLocked(); err != nil {
			c.m.log.Error("persist consumer cursor", "consumer", c.opts.Name, "err", err)
		}
	}
}

// Info returns the consumer's state and counters.
func (c *Consumer) Info() ConsumerInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	info := c.stats
	info.AckFloor = c.floorLocked()
	info.Pending = len(c.pending)
	info.Open = !c.closed
	info.Cursor = c.readPos - 1
	info.Head = c.m.j.DurableSeq()
	info.Lag = info.Head - min(info.Cursor, info.Head)
	return info
}

// Close persists the cursor and releases the consumer. Unacked events will
// be delivered again when it is reopened. Close is idempotent.
func (c *Consumer) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	err := c.saveLocked()
	err = errors.Join(err, c.r.Close())
	c.mu.Unlock()
	c.m.consumerMu.Lock()
	if c.m.consumers[c.opts.Name] == c {
		delete(c.m.consumers, c.opts.Name)
	}
	c.m.consumerMu.Unlock()
	return err
}

// Reader reads decoded durable events from the journal in seq order. It is
// what replay and streams use: it never returns an event that is not
// durable. One goroutine at a time may use a Reader; the manager reads its
// counters (for metrics) from any goroutine.
type Reader struct {
	r  *journal.Reader
	m  *Manager
	id uint64 // unique in the manager, never reused

	events atomic.Uint64 // records read
	seq    atomic.Uint64 // seq of the last one
}

// Reader returns a Reader from the first durable event with seq >= from.
// It counts as an open stream (in the manager's metrics) until Close.
func (m *Manager) Reader(from uint64) (*Reader, error) {
	r, err := m.j.Reader(from)
	if err != nil {
		return nil, err
	}
	rd := &Reader{r: r, m: m}
	m.readerMu.Lock()
	m.nextReader++
	rd.id = m.nextReader
	m.readers[rd] = struct{}{}
	m.readerMu.Unlock()
	return rd, nil
}

// Next decodes the next durable event into ev, waiting for one until ctx is
// done.
func (r *Reader) Next(ctx context.Context, ev *event.Event) error {
	seq, payload, err := r.r.Next(ctx)
	if err != nil {
		return err
	}
	r.took(seq)
	return decodeRecord(seq, payload, ev)
}

// TryNext decodes the next durable event into ev if there is one.
func (r *Reader) TryNext(ev *event.Event) (bool, error) {
	seq, payload, ok, err := r.r.TryNext()
	if err != nil || !ok {
		return false, err
	}
	r.took(seq)
	return true, decodeRecord(seq, payload, ev)
}

// took counts a record read (one goroutine at a time: no read-modify-write
// race between Loads and Stores of the reader's own counters).
func (r *Reader) took(seq uint64) {
	r.events.Store(r.events.Load() + 1)
	r.seq.Store(seq)
}

func decodeRecord(seq uint64, payload []byte, ev *event.Event) error {
	if err := ev.UnmarshalBinary(payload); err != nil {
		return fmt.Errorf("propagate: journal seq %d: %w", seq, err)
	}
	ev.Seq = seq
	return nil
}

// Close releases the reader.
func (r *Reader) Close() error {
	r.m.readerMu.Lock()
	delete(r.m.readers, r)
	r.m.readerMu.Unlock()
	return r.r.Close()
}
