// Package output forwards the durable event stream to infrastructure users
// already run: Kafka, NATS JetStream, HTTP webhooks, NDJSON files and
// syslog.
//
// # Guarantees
//
// Each output is a durable consumer of the journal with its own cursor,
// persisted in DIR/NAME/cursor.json. It reads only durable events, in seq
// order, keeps those its selector (type patterns, path glob, filter)
// matches, applies its redaction and sends them in batches. The cursor
// advances past a batch only once the target has acknowledged every event
// of it and of every batch before it (Kafka: the produce ack with
// acks=all; JetStream: the publish ack; webhook: a 2xx answer; file: write
// and fsync; syslog: the write to the connection), so an output never
// loses an acknowledged event: it is at-least-once. A failed batch is sent
// again with exponential backoff until it is acknowledged: whole, or, when
// the target tells (JetStream, a webhook in binary mode), from its first
// event not acknowledged. Only an event the target refuses for good (a
// 4xx answer other than 408/429, a record or message too large) or a
// batch that failed Retry.Attempts times (when set) is written to the
// output's dead letter file, DIR/NAME/deadletter.ndjson, and passed.
//
// The JetStream output keeps up to InFlight batches in flight: it reads
// and publishes the next batches while the acks of the earlier ones are
// on their way. When one fails, the batches after it are dropped too and
// sent again, in order, each from its first event not acknowledged. On a
// stream that allows it (allow_batched, nats-server 2.14 and later) it
// publishes in JetStream fast batches: one flow ack per up to 500
// messages instead of a publish ack per message, with the same
// guarantees (the stream still drops duplicates by message id; what it
// stored of a batch is a prefix of it, and the final publish ack says
// how long; only one batch is open at a time).
//
// Duplicates are possible after a retry of a batch the target had in part
// accepted, and after a restart, for the events acknowledged since the
// cursor was last persisted (it is persisted at most every
// CursorInterval, and on a clean stop). JetStream removes them (the message
// id is the event id); the Kafka producer is idempotent within one
// process's session.
//
// Events leave an output in seq order, and a retry sends the failed events
// again before anything newer, so the order of the events of one subject
// (file path) is kept by every target; Kafka keeps it within the
// subject's partition (the record key is the subject).
//
// # Concurrency
//
// An Outputs value is safe for concurrent use: Run runs every output in a
// goroutine of its own and waits for them; Status, Collector and the HTTP
// handler read counters.
package output

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/filter"
	"github.com/semprop/semprop/internal/route"
)

// Errors returned by the package.
var (
	ErrConfig = errors.New("output: invalid configuration")
	// ErrRejected marks a send error that retrying cannot cure: the target
	// refused the event (it goes to the dead letter file).
	ErrRejected = errors.New("output: rejected by the target")
	// ErrClosed is returned by Run once the Outputs were closed.
	ErrClosed = errors.New("output: closed")
)

// Output types.
const (
	TypeKafka   = "kafka"
	TypeNATS    = "nats"
	TypeWebhook = "webhook"
	TypeFile    = "file"
	TypeSyslog  = "syslog"
)

// Defaults.
const (
	DefaultBatchSize      = 500
	DefaultInFlight       = 8
	DefaultRetryInitial   = 100 * time.Millisecond
	DefaultRetryMax       = 30 * time.Second
	DefaultCursorInterval = time.Second
)

// Config is one output, an element of the daemon's `outputs:` list.
type Config struct {
	// Name names the output: its cursor, metrics and dead letters.
	// 1-100 of [a-zA-Z0-9_-].
	Name string `yaml:"name" json:"name"`
	// Type is kafka, nats, webhook, file or syslog.
	Type string `yaml:"type" json:"type"`

	// Types are type patterns (route grammar: "fs.*", "fs.>"); an event
	// matching any is forwarded. Empty: every type.
	Types []string `yaml:"types,omitempty" json:"types,omitempty"`
	// Path is a path glob (or "re:" expression) on the subject.
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// Filter is a filter expression (internal/filter grammar).
	Filter string `yaml:"filter,omitempty" json:"filter,omitempty"`
	// Redact hides or hashes fields before the event leaves.
	Redact *filter.RedactSpec `yaml:"redact,omitempty" json:"redact,omitempty"`

	// Start says where an output without a cursor starts: "new" (default:
	// events sequenced from its first start on) or "all" (the journal's
	// first retained event).
	Start string `yaml:"start,omitempty" json:"start,omitempty"`
	// BatchSize bounds the events of one batch (default 500).
	BatchSize int `yaml:"batch_size,omitempty" json:"batch_size,omitempty"`
	// BatchWait is how long a batch that is not full waits for more
	// events (default 0: send what is there).
	BatchWait time.Duration `yaml:"batch_wait,omitempty" json:"batch_wait,omitempty"`
	// InFlight bounds the batches sent and not yet acknowledged (default
	// 8; 1: wait for each batch's acks before reading the next). NATS
	// outputs pipeline; the others send one batch at a time.
	InFlight int `yaml:"in_flight,omitempty" json:"in_flight,omitempty"`
	// Retry configures the backoff between attempts of a failed batch.
	Retry RetryConfig `yaml:"retry,omitempty" json:"retry,omitempty"`

	Kafka   *KafkaConfig   `yaml:"kafka,omitempty" json:"kafka,omitempty"`
	NATS    *NATSConfig    `yaml:"nats,omitempty" json:"nats,omitempty"`
	Webhook *WebhookConfig `yaml:"webhook,omitempty" json:"webhook,omitempty"`
	File    *FileConfig    `yaml:"file,omitempty" json:"file,omitempty"`
	Syslog  *SyslogConfig  `yaml:"syslog,omitempty" json:"syslog,omitempty"`
}

// RetryConfig is an output's backoff: Initial, doubled up to Max, with
// jitter.
type RetryConfig struct {
	Initial time.Duration `yaml:"initial,omitempty" json:"initial,omitempty"` // default 100ms
	Max     time.Duration `yaml:"max,omitempty" json:"max,omitempty"`         // default 30s
	// Attempts, when positive, dead-letters a batch after that many failed
	// attempts. 0 (default): retry until the target takes it; a target
	// that is down holds its output back and loses nothing.
	Attempts int `yaml:"attempts,omitempty" json:"attempts,omitempty"`
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,100}$`)

// withDefaults returns c with its defaults filled in.
func (c Config) withDefaults() Config {
	if c.Start == "" {
		c.Start = "new"
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.InFlight <= 0 {
		c.InFlight = DefaultInFlight
	}
	if c.Retry.Initial <= 0 {
		c.Retry.Initial = DefaultRetryInitial
	}
	if c.Retry.Max <= 0 {
		c.Retry.Max = DefaultRetryMax
	}
	c.Retry.Max = max(c.Retry.Max, c.Retry.Initial)
	return c
}

// Validate checks c: name, type, the options of its type (and of no
// other), the selector and the redaction.
func (c Config) Validate() error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("%w: output name %q: want 1-100 of [a-zA-Z0-9_-]", ErrConfig, c.Name)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: output %s: %s", ErrConfig, c.Name, fmt.Sprintf(format, args...))
	}
	if _, err := c.matcher(); err != nil {
		return bad("%v", err)
	}
	if c.Redact != nil {
		if _, err := filter.NewRedactor(*c.Redact); err != nil {
			return bad("redact: %v", err)
		}
	}
	switch c.Start {
	case "", "new", "all":
	default:
		return bad("start %q: want new or all", c.Start)
	}
	if c.BatchSize < 0 || c.BatchSize > 100000 {
		return bad("batch_size %d: want 1-100000", c.BatchSize)
	}
	if c.InFlight < 0 || c.InFlight > 64 {
		return bad("in_flight %d: want 1-64", c.InFlight)
	}
	if c.BatchWait < 0 || c.Retry.Initial < 0 || c.Retry.Max < 0 || c.Retry.Attempts < 0 {
		return bad("batch_wait and retry values must not be negative")
	}
	given := 0
	for _, p := range []bool{c.Kafka != nil, c.NATS != nil, c.Webhook != nil, c.File != nil, c.Syslog != nil} {
		if p {
			given++
		}
	}
	if given > 1 {
		return bad("options of more than one type given")
	}
	var err error
	switch c.Type {
	case TypeKafka:
		err = c.Kafka.validate()
	case TypeNATS:
		err = c.NATS.validate()
	case TypeWebhook:
		err = c.Webhook.validate()
	case TypeFile:
		err = c.File.validate()
	case TypeSyslog:
		err = c.Syslog.validate()
	default:
		return bad("type %q: want kafka, nats, webhook, file or syslog", c.Type)
	}
	if err != nil {
		return bad("%s: %v", c.Type, err)
	}
	return nil
}

// ValidateAll validates every output and that their names are unique.
func ValidateAll(cs []Config) error {
	seen := map[string]bool{}
	for _, c := range cs {
		if err := c.Validate(); err != nil {
			return err
		}
		if seen[c.Name] {
			return fmt.Errorf("%w: output name %q given twice", ErrConfig, c.Name)
		}
		seen[c.Name] = true
	}
	return nil
}

// anyOf matches an event that one of its selectors matches.
type anyOf []*route.CompiledSelector

func (a anyOf) Match(ev *event.Event) bool {
	for _, s := range a {
		if s.Match(ev) {
			return true
		}
	}
	return false
}

// matcher compiles the selector: one compiled selector per type pattern.
func (c Config) matcher() (anyOf, error) {
	types := c.Types
	if len(types) == 0 {
		types = []string{""}
	}
	var m anyOf
	for _, t := range types {
		s, err := route.ParseSelector(t, c.Path, c.Filter)
		if err != nil {
			return nil, err
		}
		m = append(m, s)
	}
	return m, nil
}
