package output

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/semprop/semprop/event"
)

// WebhookConfig configures an HTTP webhook output.
type WebhookConfig struct {
	// URL receives POST requests.
	URL string `yaml:"url" json:"url"`
	// Mode is "binary" (default: one request per event, CloudEvents HTTP
	// binary content mode: ce-* headers, the data as body) or "batch" (one
	// request per batch, application/cloudevents-batch+json).
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
	// Headers are added to every request (e.g. Authorization).
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Secret, when set, signs each body: SignatureHeader carries
	// "sha256=" and the hex HMAC-SHA256 of the body keyed with it.
	Secret string `yaml:"secret,omitempty" json:"-"`
	// SecretEnv names an environment variable holding Secret instead
	// (keeps it out of the configuration file).
	SecretEnv string `yaml:"secret_env,omitempty" json:"secret_env,omitempty"`
	// SignatureHeader names the signature header (default
	// X-Semprop-Signature-256).
	SignatureHeader string `yaml:"signature_header,omitempty" json:"signature_header,omitempty"`
	// Timeout bounds one request (default 10s).
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// CAFile is a PEM bundle to verify an https server with instead of the
	// system's.
	CAFile string `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
}

func (c *WebhookConfig) validate() error {
	if c == nil || c.URL == "" {
		return errors.New("url is required")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q: want an http or https URL", c.URL)
	}
	if c.Mode != "" && c.Mode != "binary" && c.Mode != "batch" {
		return fmt.Errorf("mode %q: want binary or batch", c.Mode)
	}
	if c.Timeout < 0 {
		return errors.New("timeout must not be negative")
	}
	return nil
}

type webhookSink struct {
	cfg    WebhookConfig
	client *http.Client
	buf    []byte
}

var _ sink = (*webhookSink)(nil)

func newWebhook(c *WebhookConfig) (*webhookSink, error) {
	cfg := *c
	if cfg.Mode == "" {
		cfg.Mode = "binary"
	}
	if cfg.SecretEnv != "" {
		cfg.Secret = os.Getenv(cfg.SecretEnv)
		if cfg.Secret == "" {
			return nil, fmt.Errorf("webhook: secret_env %s is empty", cfg.SecretEnv)
		}
	}
	if cfg.SignatureHeader == "" {
		cfg.SignatureHeader = "X-Semprop-Signature-256"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("webhook: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("webhook: %s: no certificate", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &webhookSink{cfg: cfg, client: &http.Client{Transport: tr, Timeout: cfg.Timeout}}, nil
}

func (s *webhookSink) Send(ctx context.Context, evs []*event.Event) error {
	if s.cfg.Mode == "batch" {
		s.buf = appendBatch(s.buf[:0], evs)
		return s.post(ctx, s.buf, ctBatch, nil)
	}
	for i, ev := range evs {
		body, ct := binaryBody(ev)
		if err := s.post(ctx, body, ct, ev); err != nil {
			if i > 0 {
				return &partialError{done: i, err: err}
			}
			return err
		}
	}
	return nil
}

func (s *webhookSink) post(ctx context.Context, body []byte, ct string, ev *event.Event) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if ev != nil {
		eachAttr(ev, func(name, value string) {
			req.Header.Set("ce-"+name, headerEscape(value))
		})
	}
	for k, v := range s.cfg.Headers {
		req.Header.Set(k, v)
	}
	if s.cfg.Secret != "" {
		req.Header.Set(s.cfg.SignatureHeader, Sign([]byte(s.cfg.Secret), body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		err := fmt.Errorf("webhook: %s answered %s", s.cfg.URL, resp.Status)
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return &RetryAfterError{After: d, Err: err}
		}
		return err
	default:
		return fmt.Errorf("%w: webhook: %s answered %s", ErrRejected, s.cfg.URL, resp.Status)
	}
}

func (s *webhookSink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

// Sign returns the signature header value of body: "sha256=" and the hex
// HMAC-SHA256 of body keyed with key. A receiver recomputes it over the
// raw body and compares with hmac.Equal.
func Sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// retryAfter parses a Retry-After value: seconds or an HTTP date. A
// pause longer than a day is taken as a day.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(min(n, 86400)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// headerEscape percent-encodes what the CloudEvents HTTP binding says a
// header value must not hold raw: bytes outside printable ASCII, space,
// '"' and '%'.
func headerEscape(v string) string {
	clean := true
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
