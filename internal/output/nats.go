package output

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
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
}

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
	_, err := parseSubjectTemplate(c.subject())
	return err
}

func (c *NATSConfig) subject() string {
	if c.Subject == "" {
		return "semprop.{type}.{path}"
	}
	return c.Subject
}

type natsSink struct {
	cfg     NATSConfig
	log     *slog.Logger
	subject subjectTemplate
	nc      *nats.Conn
	js      jetstream.JetStream
	futures []jetstream.PubAckFuture
}

var _ sink = (*natsSink)(nil)

func newNATS(c *NATSConfig, log *slog.Logger) (*natsSink, error) {
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
	return &natsSink{cfg: cfg, log: log, subject: t}, nil
}

// connect connects (again) to the server. Publishes made while the
// connection is down fail at once instead of being buffered
// (ReconnectBufSize -1): what the server stored of a batch is then always
// a prefix of it, and the retry keeps the per-subject order.
func (s *natsSink) connect() error {
	opts := []nats.Option{
		nats.Name("semprop output"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(-1),
		nats.RetryOnFailedConnect(false),
		nats.Timeout(5 * time.Second),
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
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1<<16), jetstream.WithPublishAsyncTimeout(s.cfg.AckTimeout))
	if err != nil {
		nc.Close()
		return fmt.Errorf("nats: %w", err)
	}
	s.nc, s.js = nc, js
	return nil
}

// Send publishes evs asynchronously and waits for every ack.
func (s *natsSink) Send(ctx context.Context, evs []*event.Event) error {
	if s.nc == nil || s.nc.IsClosed() {
		if err := s.connect(); err != nil {
			return err
		}
	}
	s.futures = s.futures[:0]
	var pubErr error
	for _, ev := range evs {
		msg := nats.NewMsg(s.subject.expand(ev))
		id := msgID(ev)
		msg.Header.Set(jetstream.MsgIDHeader, id)
		msg.Header.Set("Content-Type", ctStructured)
		msg.Data = ev.AppendJSON(make([]byte, 0, 256+len(ev.Data)))
		f, err := s.js.PublishMsgAsync(msg)
		if err != nil {
			pubErr = fmt.Errorf("nats: publish %s: %w", msg.Subject, err)
			break // the rest would not keep the order
		}
		s.futures = append(s.futures, f)
	}
	timeout := time.NewTimer(s.cfg.AckTimeout + time.Second)
	defer timeout.Stop()
	for i, f := range s.futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return s.fail(fmt.Errorf("nats: publish ack %d of %d: %w", i+1, len(evs), err))
		case <-timeout.C:
			return s.fail(fmt.Errorf("nats: no publish ack within %v", s.cfg.AckTimeout))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if pubErr != nil {
		return s.fail(pubErr)
	}
	return nil
}

// fail drops the connection after a failed batch: the next attempt
// starts on a fresh one, with nothing of the failed batch still queued.
func (s *natsSink) fail(err error) error {
	if s.nc != nil {
		s.nc.Close()
		s.nc = nil
	}
	return err
}

func msgID(ev *event.Event) string {
	if ev.SourceID != "" {
		return ev.Source + " " + ev.SourceID
	}
	return ev.ID.String()
}

func (s *natsSink) Close() error {
	if s.nc != nil {
		s.nc.Close()
		s.nc = nil
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
