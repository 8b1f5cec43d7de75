package output

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/semprop/semprop/event"
)

// NATSConfig configures a NATS JetStream output. Each event is published
// as a structured CloudEvent (application/cloudevents+json) with the
// Nats-Msg-Id header set to its id, so that the stream's duplicate window
// removes the copies a retry sends. The target stream must exist and
// capture the subjects.
type NATSConfig struct {
	// URL is the server URL, or several separated by commas.
	URL string `yaml:"url" json:"url"`
	// Subject is the subject template: {type} is the event type, {path}
	// the subject's path as tokens (/srv/a/b.md → srv.a.b_md: '.', spaces
	// and wildcards become '_'); default "semprop.{type}.{path}".
	Subject string `yaml:"subject,omitempty" json:"subject,omitempty"`
	// CredsFile, Token, or User and Password authenticate; TokenEnv and
	// PasswordEnv name environment variables holding them instead.
	CredsFile   string `yaml:"creds_file,omitempty" json:"creds_file,omitempty"`
	Token       string `yaml:"token,omitempty" json:"-"`
	TokenEnv    string `yaml:"token_env,omitempty" json:"token_env,omitempty"`
	User        string `yaml:"user,omitempty" json:"user,omitempty"`
	Password    string `yaml:"password,omitempty" json:"-"`
	PasswordEnv string `yaml:"password_env,omitempty" json:"password_env,omitempty"`
	// CAFile verifies a tls:// server; CertFile and KeyFile are a client
	// certificate.
	CAFile   string `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
	CertFile string `yaml:"cert_file,omitempty" json:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty" json:"key_file,omitempty"`
	// AckTimeout bounds the wait for a batch's publish acks (default 10s).
	AckTimeout time.Duration `yaml:"ack_timeout,omitempty" json:"ack_timeout,omitempty"`
	// BatchPublish is "auto" (default: publish in JetStream fast batches,
	// one flow ack per up to 500 messages, when the stream capturing the
	// subjects allows it, allow_batched) or "off" (a publish ack per
	// message).
	BatchPublish string `yaml:"batch_publish,omitempty" json:"batch_publish,omitempty"`
}

// BatchPublish values.
const (
	BatchPublishAuto = "auto"
	BatchPublishOff  = "off"
)

func (c *NATSConfig) validate() error {
	if c == nil || c.URL == "" {
		return errors.New("url is required")
	}
	if c.AckTimeout < 0 {
		return errors.New("ack_timeout must not be negative")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("cert_file and key_file go together")
	}
	switch c.BatchPublish {
	case "", BatchPublishAuto, BatchPublishOff:
	default:
		return fmt.Errorf("batch_publish %q: want auto or off", c.BatchPublish)
	}
	_, err := parseSubjectTemplate(c.subject())
	return err
}

func (c *NATSConfig) subject() string {
	if c.Subject == "" {
		return "semprop.{type}.{path}"
	}
	return c.Subject
}

// natsSink publishes to JetStream. Each event is a core NATS publish
// whose reply subject is one of the sink's own (a slot of the window of
// publishes in flight); the stream's publish ack comes back on it. That is
// what nats.go's PublishAsync does, without a future, a timer and a map
// entry per message; the sink reuses one message, header and body buffer.
type natsSink struct {
	cfg      NATSConfig
	log      *slog.Logger
	subject  subjectTemplate
	subjects map[subjectKey]string // expanded subjects, a bounded cache
	slots    int                   // a power of two, at least the events in flight
	conn     *natsConn             // nil before the first batch and after a failure
	next     int                   // slot of the next publish
	msg      nats.Msg              // reused: PublishMsg copies it out
	id       []string              // msg.Header[Nats-Msg-Id]
	flow     int                   // messages per flow ack of a fast batch
	fastOff  atomic.Bool           // the stream refused a fast batch: publish per message
	wasFast  bool                  // the mode of the last connection, for the log
	// fastBatches counts the fast batches the stream ended with a
	// publish ack.
	fastBatches atomic.Uint64
	mode        atomic.Pointer[string] // Info.Publish
}

var (
	_ pipeliner    = (*natsSink)(nil)
	_ publishModer = (*natsSink)(nil)
)

// Publish modes, in Info.Publish.
const (
	PublishFastBatch  = "fast_batch"
	PublishPerMessage = "per_message"
)

// publishMode returns how the sink publishes; it is safe for concurrent
// use.
func (s *natsSink) publishMode() string {
	if p := s.mode.Load(); p != nil {
		return *p
	}
	return ""
}

// subjectKey is what a subject template expands.
type subjectKey struct{ typ, path string }

// maxSubjects bounds the subject cache.
const maxSubjects = 4096

// newNATS builds the sink of a NATS output that keeps up to inFlight
// events in flight, in batches of up to batchSize.
func newNATS(c *NATSConfig, inFlight, batchSize int, log *slog.Logger) (*natsSink, error) {
	cfg := *c
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = 10 * time.Second
	}
	if cfg.TokenEnv != "" {
		cfg.Token = os.Getenv(cfg.TokenEnv)
	}
	if cfg.PasswordEnv != "" {
		cfg.Password = os.Getenv(cfg.PasswordEnv)
	}
	t, err := parseSubjectTemplate(cfg.subject())
	if err != nil {
		return nil, err
	}
	s := &natsSink{cfg: cfg, log: log, subject: t, subjects: map[subjectKey]string{}, slots: 1, id: []string{""},
		flow: fastFlow(batchSize)}
	for s.slots < inFlight {
		s.slots *= 2
	}
	s.msg.Header = nats.Header{jetstream.MsgIDHeader: s.id, "Content-Type": {ctStructured}}
	return s, nil
}

// natsConn is one connection and the publishes awaiting their acks on it.
// A failure drops it whole: every publish still awaiting its ack fails,
// and the next batch starts on a new connection.
type natsConn struct {
	s          *natsSink
	nc         *nats.Conn
	prefix     string   // reply subjects: prefix + slot
	replies    []string // built on first use
	fast       bool     // publish in fast batches
	fastPrefix string   // reply subjects of fast batches
	stopped    error    // a publish failed: c takes no more (the sink's goroutine only)

	mu    sync.Mutex // guards the fields below
	slots []natsSlot // the publish awaiting its ack on each reply subject
	err   error      // why the connection failed; nil while it works
	batch *natsBatch // the fast batch open or ending; written by the sink's goroutine
}

// natsSlot names an event of a batch in flight.
type natsSlot struct {
	f *natsFlight
	i int
}

// natsFlight is a batch in flight.
type natsFlight struct {
	s        *natsSink
	c        *natsConn
	deadline time.Time
	done     chan struct{} // closed by finishLocked

	// A flight of a fast batch: b's messages first to last.
	fast        bool
	b           *natsBatch
	first, last uint64

	// guarded by c.mu:
	acked    []bool
	left     int   // acks (or refusals) awaited
	refusal  error // the first event the stream refused, at refusedAt
	refuseAt int
	finished bool
	err      error // the connection's failure, if it ended the flight
	res      error // the outcome of a flight of a fast batch
}

// refuseLocked records that the event at i failed with err (refused by
// the stream, or not published); the flight keeps the first.
func (f *natsFlight) refuseLocked(i int, err error) {
	if f.refusal == nil || i < f.refuseAt {
		f.refusal, f.refuseAt = err, i
	}
}

// finishLocked ends the flight: err is the connection's failure, or nil
// once every ack or refusal is in.
func (f *natsFlight) finishLocked(err error) {
	if f.finished {
		return
	}
	f.finished, f.err = true, err
	close(f.done)
}

// result is the flight's outcome once finished: nil when every event was
// acked, else the error of the first event not acked, in a *partialError
// counting the acked events before it.
func (f *natsFlight) resultLocked() error {
	if f.fast {
		return f.fastResultLocked()
	}
	done := 0
	for done < len(f.acked) && f.acked[done] {
		done++
	}
	switch {
	case done == len(f.acked):
		return nil
	case f.refusal != nil && f.refuseAt == done:
		return &partialError{done: done, err: f.refusal}
	case f.err != nil:
		return &partialError{done: done, err: f.err}
	default: // not reached: a flight finishes with every ack in or a failure
		return &partialError{done: done, err: errBadAck}
	}
}

// connect connects (again) to the server. A connection is used for one
// TCP connection only: the client does not reconnect it (the sink
// connects anew for the next attempt), so a disconnection fails every
// publish awaiting its ack and every publish after it. What the server
// stored of the batches in flight is then always a prefix of them, and
// the retry keeps the per-subject order. (A client that reconnected would
// carry on with the rest of a batch whose publishing ran across the
// disconnection, storing it before what the lost connection dropped.)
//
// It then asks whether the stream capturing subject takes fast batches.
func (s *natsSink) connect(subject string) error {
	c := &natsConn{s: s, slots: make([]natsSlot, s.slots), replies: make([]string, s.slots)}
	disconnected := func(err error) {
		if err == nil {
			err = nats.ErrDisconnected
		}
		c.fail(fmt.Errorf("nats: disconnected: %w", err))
	}
	opts := []nats.Option{
		nats.Name("semprop output"),
		nats.NoReconnect(),
		nats.RetryOnFailedConnect(false),
		nats.Timeout(5 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { disconnected(err) }),
		nats.ClosedHandler(func(nc *nats.Conn) { disconnected(nc.LastError()) }),
	}
	if s.cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(s.cfg.CredsFile))
	}
	if s.cfg.Token != "" {
		opts = append(opts, nats.Token(s.cfg.Token))
	}
	if s.cfg.User != "" {
		opts = append(opts, nats.UserInfo(s.cfg.User, s.cfg.Password))
	}
	if s.cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(s.cfg.CAFile))
	}
	if s.cfg.CertFile != "" {
		opts = append(opts, nats.ClientCert(s.cfg.CertFile, s.cfg.KeyFile))
	}
	nc, err := nats.Connect(s.cfg.URL, opts...)
	if err != nil {
		return fmt.Errorf("nats: connect: %w", err)
	}
	c.nc = nc
	c.prefix = nc.NewInbox() + "."
	sub, err := nc.Subscribe(c.prefix+"*", c.onAck)
	if err == nil {
		// The window bounds what is pending.
		err = sub.SetPendingLimits(-1, -1)
	}
	if err == nil && s.detectFast(nc, subject) {
		c.fast, c.fastPrefix = true, nc.NewInbox()+"."
		sub, err = nc.Subscribe(c.fastPrefix+">", c.onFastReply)
		if err == nil {
			err = sub.SetPendingLimits(-1, -1)
		}
	}
	if err != nil {
		nc.Close()
		return fmt.Errorf("nats: subscribe to acks: %w", err)
	}
	mode := PublishPerMessage
	if c.fast {
		mode = PublishFastBatch
	}
	s.mode.Store(&mode)
	if c.fast != s.wasFast {
		s.log.Info("output: JetStream publish mode", "fast_batch", c.fast, "flow", s.flow)
		s.wasFast = c.fast
	}
	s.conn, s.next = c, 0
	return nil
}

// Start publishes evs, in order, without waiting for their acks.
func (s *natsSink) Start(ctx context.Context, evs []*event.Event) func(context.Context) error {
	if s.conn == nil && len(evs) > 0 {
		if err := s.connect(s.subjectOf(evs[0])); err != nil {
			return func(context.Context) error { return err }
		}
	}
	c := s.conn
	if c.fast && !s.fastOff.Load() {
		return s.startFast(ctx, c, evs)
	}
	if c.fast {
		// The stream refused a fast batch: the flights in it fail, and
		// so does this one, which must not be stored before them; they
		// are sent again on a new connection, per message.
		err := errors.New("nats: the stream refused a fast batch")
		s.drop(c, err)
		return func(context.Context) error { return err }
	}
	f := &natsFlight{s: s, c: c, deadline: time.Now().Add(s.cfg.AckTimeout), done: make(chan struct{}),
		acked: make([]bool, len(evs)), left: len(evs)}
	if c.stopped != nil {
		// A publish failed: nothing more goes out before the failed
		// flight is dealt with, or the events after it would be stored
		// before it.
		c.mu.Lock()
		f.finishLocked(c.stopped)
		c.mu.Unlock()
		return f.wait
	}
	mask := s.slots - 1
	c.mu.Lock()
	if c.err == nil && len(evs) > s.slots {
		c.err = fmt.Errorf("nats: more than %d publishes in flight", s.slots)
	}
	for i := range evs {
		if c.err != nil {
			break
		}
		slot := (s.next + i) & mask
		if c.slots[slot].f != nil {
			c.err = fmt.Errorf("nats: more than %d publishes in flight", s.slots)
			break
		}
		c.slots[slot] = natsSlot{f: f, i: i}
	}
	if c.err != nil {
		// The flight is refused whole; the wait drops the connection.
		for i := range c.slots {
			if c.slots[i].f == f {
				c.slots[i] = natsSlot{}
			}
		}
		f.finishLocked(c.err)
		c.mu.Unlock()
		return f.wait
	}
	c.mu.Unlock()
	for i, ev := range evs {
		if testBeforePublish != nil {
			testBeforePublish(c.nc, i)
		}
		slot := s.next & mask
		if err := s.publish(c, ev, c.reply(slot)); err != nil {
			// The rest would not keep the order: wait for what was
			// published, and publish nothing more on c.
			c.stopped = errBatchClosed
			c.mu.Lock()
			for j := i; j < len(evs); j++ {
				if sl := &c.slots[(s.next+j-i)&mask]; sl.f == f {
					*sl = natsSlot{}
				}
			}
			f.refuseLocked(i, err)
			f.left -= len(evs) - i
			if f.left == 0 {
				f.finishLocked(nil)
			}
			c.mu.Unlock()
			s.next = (s.next + len(evs) - i) & mask
			return f.wait
		}
		s.next = (s.next + 1) & mask
	}
	return f.wait
}

// Send publishes evs and waits for every ack.
func (s *natsSink) Send(ctx context.Context, evs []*event.Event) error {
	return s.Start(ctx, evs)(ctx)
}

// wait waits for the flight's acks. On a failure it drops the connection.
func (f *natsFlight) wait(ctx context.Context) error {
	if f.b != nil && !f.b.committed {
		if f.last == f.b.sent {
			// Nothing follows f: end the batch, whether its acks
			// are in or not. No batch stays open while the output
			// idles: the stream drops a batch idle for 10s, and
			// what is appended to it then is refused.
			f.s.commitFast(f.c, f.b)
		} else {
			select {
			case <-f.done:
			default:
				if f.s.needsCommit(f) {
					f.s.commitFast(f.c, f.b)
				}
			}
		}
	}
	t := time.NewTimer(time.Until(f.deadline))
	defer t.Stop()
	select {
	case <-f.done:
	case <-t.C:
		f.c.fail(fmt.Errorf("nats: no publish ack within %v", f.s.cfg.AckTimeout))
	case <-ctx.Done():
		return ctx.Err()
	}
	f.c.mu.Lock()
	// A flight the connection's failure did not reach (a batch the
	// stream dropped) fails too: only an ack makes a success.
	f.finishLocked(fmt.Errorf("nats: no publish ack within %v", f.s.cfg.AckTimeout))
	err := f.resultLocked()
	f.c.mu.Unlock()
	if err == nil {
		return nil
	}
	f.s.drop(f.c, err)
	return err
}

// drop closes c after a failure, failing every publish still awaiting its
// ack on it: the next attempt starts on a fresh connection, with nothing
// failed still queued.
func (s *natsSink) drop(c *natsConn, err error) {
	c.fail(err)
	if c.nc != nil {
		c.nc.Close()
	}
	if s.conn == c {
		s.conn = nil
	}
}

// reply returns the reply subject of slot.
func (c *natsConn) reply(slot int) string {
	r := c.replies[slot]
	if r == "" {
		r = c.prefix + strconv.Itoa(slot)
		c.replies[slot] = r
	}
	return r
}

// onAck takes a publish ack (or a refusal) on a reply subject.
func (c *natsConn) onAck(m *nats.Msg) {
	slot, err := strconv.Atoi(strings.TrimPrefix(m.Subject, c.prefix))
	if err != nil || slot < 0 || slot >= len(c.slots) {
		return
	}
	ackErr := pubAckErr(m.Data, m.Header)
	c.mu.Lock()
	defer c.mu.Unlock()
	sl := c.slots[slot]
	if sl.f == nil {
		return
	}
	c.slots[slot] = natsSlot{}
	f := sl.f
	if ackErr != nil {
		f.refuseLocked(sl.i, fmt.Errorf("nats: publish ack %d of %d: %w", sl.i+1, len(f.acked), ackErr))
	} else {
		f.acked[sl.i] = true
	}
	f.left--
	if f.left == 0 {
		f.finishLocked(nil)
	}
}

// fail fails every publish awaiting its ack on c, and the publishes to
// come, with err.
func (c *natsConn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	if c.batch != nil {
		c.batch.failLocked(err)
	}
	for i, sl := range c.slots {
		if sl.f != nil {
			c.slots[i] = natsSlot{}
			sl.f.finishLocked(err)
		}
	}
}

// subjectOf returns the subject of ev, from the cache when it can.
// publish publishes ev on c with the reply subject reply. A message the
// client refuses for its size is an ErrRejected.
func (s *natsSink) publish(c *natsConn, ev *event.Event, reply string) error {
	s.msg.Subject = s.subjectOf(ev)
	s.msg.Reply = reply
	s.id[0] = msgID(ev)
	s.msg.Data = ev.AppendJSON(s.msg.Data[:0])
	if err := c.nc.PublishMsg(&s.msg); err != nil {
		err = fmt.Errorf("nats: publish %s: %w", s.msg.Subject, err)
		if errors.Is(err, nats.ErrMaxPayload) {
			err = fmt.Errorf("%w: %w", ErrRejected, err)
		}
		return err
	}
	return nil
}

func (s *natsSink) subjectOf(ev *event.Event) string {
	k := subjectKey{ev.Type, ev.Subject}
	if v, ok := s.subjects[k]; ok {
		return v
	}
	if len(s.subjects) >= maxSubjects {
		clear(s.subjects)
	}
	v := s.subject.expand(ev)
	s.subjects[k] = v
	return v
}

// testBeforePublish, set by tests, runs before each message of a batch
// published one message at a time.
var testBeforePublish func(nc *nats.Conn, i int)

// Errors of publish acks.
var (
	errNoResponders = errors.New("nats: no stream captures the subject (no responders)")
	errBadAck       = errors.New("nats: not a publish ack")
)

// errCodeTooLarge is JetStream's error code for a message larger than the
// stream allows: sending it again cannot succeed.
const errCodeTooLarge = 10054

// pubAckErr returns nil when data (with header h) is a JetStream publish
// ack, else why it is not: the error the stream answered, no responders,
// or errBadAck.
func pubAckErr(data []byte, h nats.Header) error {
	if len(data) == 0 {
		if h.Get("Status") == "503" {
			return errNoResponders
		}
		return errBadAck
	}
	if pubAckFast(data) {
		return nil
	}
	return pubAckSlow(data)
}

// pubAckFast reports whether data is the common answer,
// {"stream":"NAME","seq":N...}, without reflection: a JSON object whose
// first key is a non-empty stream, with no other stream or error key.
// Keys as encoding/json matches them (any case, escapes, non-ASCII folds)
// are left to pubAckSlow.
func pubAckFast(data []byte) bool {
	const prefix = `{"stream":"`
	if len(data) <= len(prefix) || string(data[:len(prefix)]) != prefix || data[len(prefix)] == '"' {
		return false
	}
	streams := 0
	for i, c := range data {
		if c >= 0x80 || c == '\\' {
			return false
		}
		if c != '"' {
			continue
		}
		if hasFoldAt(data, i, `"error"`) {
			return false
		}
		if hasFoldAt(data, i, `"stream"`) {
			streams++
		}
	}
	return streams == 1 && json.Valid(data)
}

// hasFoldAt reports whether data holds key at i, in any case (ASCII).
func hasFoldAt(data []byte, i int, key string) bool {
	return len(data)-i >= len(key) && bytes.EqualFold(data[i:i+len(key)], []byte(key))
}

// pubAckSlow is pubAckErr with encoding/json.
func pubAckSlow(data []byte) error {
	var a struct {
		Stream string `json:"stream"`
		Error  *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return fmt.Errorf("%w: %v", errBadAck, err)
	}
	if a.Error != nil {
		err := fmt.Errorf("nats: stream error %d (%d): %s", a.Error.Code, a.Error.ErrCode, a.Error.Description)
		if a.Error.ErrCode == errCodeTooLarge {
			err = fmt.Errorf("%w: %w", ErrRejected, err)
		}
		return err
	}
	if a.Stream == "" {
		return errBadAck
	}
	return nil
}

func msgID(ev *event.Event) string {
	if ev.SourceID != "" {
		return ev.Source + " " + ev.SourceID
	}
	return ev.ID.String()
}

func (s *natsSink) Close() error {
	if s.conn != nil {
		s.drop(s.conn, ErrClosed)
	}
	return nil
}

// subjectTemplate is a parsed subject template: literal parts and
// placeholders.
type subjectTemplate []string // even indexes literal, odd placeholder names

func parseSubjectTemplate(t string) (subjectTemplate, error) {
	var out subjectTemplate
	for {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			out = append(out, t)
			break
		}
		j := strings.IndexByte(t[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("subject template: unclosed '{'")
		}
		name := t[i+1 : i+j]
		if name != "type" && name != "path" {
			return nil, fmt.Errorf("subject template: unknown {%s}: want {type} or {path}", name)
		}
		out = append(out, t[:i], name)
		t = t[i+j+1:]
	}
	if strings.ContainsAny(strings.Join(out, ""), " \t\r\n*>") {
		return nil, fmt.Errorf("subject template: spaces and wildcards are not allowed")
	}
	return out, nil
}

// expand returns the subject of ev: empty tokens (an event without a
// path) are left out.
func (t subjectTemplate) expand(ev *event.Event) string {
	var b strings.Builder
	for i, part := range t {
		if i%2 == 0 {
			b.WriteString(part)
			continue
		}
		switch part {
		case "type":
			b.WriteString(subjectTokens(ev.Type, false))
		case "path":
			b.WriteString(subjectTokens(ev.Subject, true))
		}
	}
	// Collapse the empty tokens an empty placeholder leaves.
	s := b.String()
	for strings.Contains(s, "..") {
		s = strings.ReplaceAll(s, "..", ".")
	}
	return strings.Trim(s, ".")
}

// subjectTokens turns a type or a path into subject tokens: a path's '/'
// separates tokens and its '.' becomes '_'; bytes a subject must not hold
// (spaces, control bytes, '*', '>') become '_'.
func subjectTokens(s string, path bool) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case path && c == '/':
			if len(b) > 0 && b[len(b)-1] != '.' {
				b = append(b, '.')
			}
		case path && c == '.':
			b = append(b, '_')
		case c <= ' ' || c == 0x7f || c == '*' || c == '>':
			b = append(b, '_')
		default:
			b = append(b, c)
		}
	}
	return strings.Trim(string(b), ".")
}
