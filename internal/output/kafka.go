package output

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/route"
)

// KafkaConfig configures a Kafka output: an idempotent producer (acks from
// all in-sync replicas), record key = the event's subject (a file's events
// share a partition, in order), CloudEvents Kafka binding.
type KafkaConfig struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string `yaml:"brokers" json:"brokers"`
	// Topic receives the events no entry of Topics claims.
	Topic string `yaml:"topic,omitempty" json:"topic,omitempty"`
	// Topics route by type pattern: the first entry whose pattern matches
	// the event's type names its topic.
	Topics []KafkaTopic `yaml:"topics,omitempty" json:"topics,omitempty"`
	// Mode is "binary" (default: ce_* headers, the data as value) or
	// "structured" (the whole CloudEvent as JSON value, content-type
	// application/cloudevents+json).
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
	// ClientID names the producer to the brokers (default semprop).
	ClientID string `yaml:"client_id,omitempty" json:"client_id,omitempty"`
	// DeliveryTimeout bounds how long a record may wait for its ack
	// before the batch fails and is retried (default 30s).
	DeliveryTimeout time.Duration `yaml:"delivery_timeout,omitempty" json:"delivery_timeout,omitempty"`
	TLS             *KafkaTLS     `yaml:"tls,omitempty" json:"tls,omitempty"`
	SASL            *KafkaSASL    `yaml:"sasl,omitempty" json:"sasl,omitempty"`
}

// KafkaTopic routes the events of a type pattern to a topic.
type KafkaTopic struct {
	Types string `yaml:"types" json:"types"`
	Topic string `yaml:"topic" json:"topic"`
}

// KafkaTLS enables TLS to the brokers.
type KafkaTLS struct {
	CAFile     string `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
	CertFile   string `yaml:"cert_file,omitempty" json:"cert_file,omitempty"`
	KeyFile    string `yaml:"key_file,omitempty" json:"key_file,omitempty"`
	ServerName string `yaml:"server_name,omitempty" json:"server_name,omitempty"`
}

// KafkaSASL authenticates to the brokers.
type KafkaSASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `yaml:"mechanism" json:"mechanism"`
	User      string `yaml:"user" json:"user"`
	Password  string `yaml:"password,omitempty" json:"-"`
	// PasswordEnv names an environment variable holding Password instead.
	PasswordEnv string `yaml:"password_env,omitempty" json:"password_env,omitempty"`
}

func (c *KafkaConfig) validate() error {
	if c == nil || len(c.Brokers) == 0 {
		return errors.New("brokers are required")
	}
	if c.Topic == "" && len(c.Topics) == 0 {
		return errors.New("topic or topics is required")
	}
	for _, t := range c.Topics {
		if t.Topic == "" {
			return fmt.Errorf("topics: %q has no topic", t.Types)
		}
		if _, err := route.ParseSelector(t.Types, "", ""); err != nil {
			return fmt.Errorf("topics: %w", err)
		}
	}
	if c.Mode != "" && c.Mode != "binary" && c.Mode != "structured" {
		return fmt.Errorf("mode %q: want binary or structured", c.Mode)
	}
	if c.DeliveryTimeout != 0 && c.DeliveryTimeout < time.Second {
		return errors.New("delivery_timeout: want at least 1s")
	}
	if c.SASL != nil {
		switch c.SASL.Mechanism {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		default:
			return fmt.Errorf("sasl mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASL.Mechanism)
		}
	}
	if c.TLS != nil && (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("tls: cert_file and key_file go together")
	}
	return nil
}

type kafkaTopic struct {
	sel   *route.CompiledSelector
	topic string
}

type kafkaSink struct {
	cfg     KafkaConfig
	client  *kgo.Client
	topics  []kafkaTopic
	records []*kgo.Record
}

var _ sink = (*kafkaSink)(nil)

func newKafka(c *KafkaConfig, log *slog.Logger) (*kafkaSink, error) {
	cfg := *c
	if cfg.Mode == "" {
		cfg.Mode = "binary"
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "semprop"
	}
	if cfg.DeliveryTimeout == 0 {
		cfg.DeliveryTimeout = 30 * time.Second
	}
	s := &kafkaSink{cfg: cfg}
	for _, t := range cfg.Topics {
		sel, err := route.ParseSelector(t.Types, "", "")
		if err != nil {
			return nil, err
		}
		s.topics = append(s.topics, kafkaTopic{sel: sel, topic: t.Topic})
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent writes are the default and need it
		kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout),
		kgo.ProducerLinger(0),
		kgo.MaxBufferedRecords(1 << 16),
		kgo.WithLogger(kgoLogger{log}),
	}
	if cfg.TLS != nil {
		tc, err := cfg.TLS.config()
		if err != nil {
			return nil, fmt.Errorf("kafka: tls: %w", err)
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if cfg.SASL != nil {
		sc := *cfg.SASL
		if sc.PasswordEnv != "" {
			sc.Password = os.Getenv(sc.PasswordEnv)
		}
		cfg.SASL = &sc
		var m sasl.Mechanism
		switch cfg.SASL.Mechanism {
		case "PLAIN":
			m = plain.Auth{User: cfg.SASL.User, Pass: cfg.SASL.Password}.AsMechanism()
		case "SCRAM-SHA-256":
			m = scram.Auth{User: cfg.SASL.User, Pass: cfg.SASL.Password}.AsSha256Mechanism()
		case "SCRAM-SHA-512":
			m = scram.Auth{User: cfg.SASL.User, Pass: cfg.SASL.Password}.AsSha512Mechanism()
		}
		opts = append(opts, kgo.SASL(m))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	s.client = cl
	return s, nil
}

func (t *KafkaTLS) config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (s *kafkaSink) topic(ev *event.Event) string {
	for _, t := range s.topics {
		if t.sel.Match(ev) {
			return t.topic
		}
	}
	return s.cfg.Topic
}

// record builds the Kafka record of ev.
func (s *kafkaSink) record(ev *event.Event) *kgo.Record {
	r := &kgo.Record{Topic: s.topic(ev)}
	if ev.Subject != "" {
		r.Key = []byte(ev.Subject)
	}
	if s.cfg.Mode == "structured" {
		r.Value = ev.AppendJSON(nil)
		r.Headers = []kgo.RecordHeader{{Key: "content-type", Value: []byte(ctStructured)}}
		return r
	}
	body, ct := binaryBody(ev)
	r.Value = body
	r.Headers = make([]kgo.RecordHeader, 0, 12)
	if ct != "" {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: "content-type", Value: []byte(ct)})
	}
	eachAttr(ev, func(name, value string) {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: "ce_" + name, Value: []byte(value)})
	})
	return r
}

// Send produces evs and waits for every ack.
func (s *kafkaSink) Send(ctx context.Context, evs []*event.Event) error {
	s.records = s.records[:0]
	for _, ev := range evs {
		rec := s.record(ev)
		if rec.Topic == "" {
			return fmt.Errorf("%w: kafka: no topic for type %s", ErrRejected, ev.Type)
		}
		s.records = append(s.records, rec)
	}
	if err := s.client.ProduceSync(ctx, s.records...).FirstErr(); err != nil {
		if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
			return fmt.Errorf("%w: kafka: %w", ErrRejected, err)
		}
		return fmt.Errorf("kafka: %w", err)
	}
	return nil
}

func (s *kafkaSink) Close() error {
	s.client.Close()
	return nil
}

// kgoLogger passes franz-go's warnings and errors to slog.
type kgoLogger struct{ log *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		l.log.Error("kafka: "+msg, keyvals...)
	case kgo.LogLevelWarn:
		l.log.Warn("kafka: "+msg, keyvals...)
	}
}
