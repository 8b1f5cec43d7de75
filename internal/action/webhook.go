package action

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/semprop/semprop/internal/audit"
)

// SignatureHeader carries the webhook's HMAC-SHA256 signature:
// "sha256=" and the hex HMAC, keyed with the secret, of the ce-id
// header's value, a newline, and the body.
const SignatureHeader = "Semprop-Signature"

// WebhookType is the CloudEvents type of webhook requests.
const WebhookType = "semprop.action.webhook"

// webhook POSTs the match in CloudEvents binary mode, with the
// idempotency key as the ce-id so that receivers can de-duplicate.
type webhook struct {
	c       *Call
	url     string
	timeout time.Duration
	retries int
	backoff time.Duration
	secret  string
}

func newWebhook(c *Call) (Action, error) {
	w := &webhook{c: c, url: c.Args.Str("url")}
	u, err := url.Parse(w.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook: url %q: want an http or https URL: %w", w.url, ErrArgs)
	}
	if w.timeout, err = c.Args.Duration("timeout", 5*time.Second); err != nil {
		return nil, err
	}
	if w.retries, err = c.Args.Int("retries", 3); err != nil {
		return nil, err
	}
	if w.backoff, err = c.Args.Duration("backoff", 200*time.Millisecond); err != nil {
		return nil, err
	}
	if name := c.Args.Str("secret_env"); name != "" {
		if w.secret = c.Env.getenv(name); w.secret == "" {
			return nil, fmt.Errorf("webhook: secret_env %s: not set in the daemon's environment: %w", name, ErrArgs)
		}
	}
	return w, nil
}

func (w *webhook) Validate(context.Context) ([]audit.Check, json.RawMessage, error) {
	return nil, nil, nil
}

// Sign returns the value of SignatureHeader for a request.
func Sign(secret, id string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(id))
	m.Write([]byte{'\n'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// errPermanent marks a response that retrying will not change.
var errPermanent = errors.New("action: webhook refused")

func (w *webhook) body() []byte {
	m := w.c.Match
	if m == nil {
		m = &MatchView{}
	}
	b, _ := json.Marshal(map[string]any{"rule": w.c.Rule, "key": m.Key, "match": m.ID, "seqs": m.Seqs,
		"message": m.Message, "severity": m.Severity})
	return b
}

func (w *webhook) Execute(ctx context.Context, _ json.RawMessage) (json.RawMessage, error) {
	body := w.body()
	delay := w.backoff
	var last error
	for attempt := 0; attempt <= w.retries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(delay):
			}
			delay = min(2*delay, 10*time.Second)
		}
		status, err := w.post(ctx, body)
		if err == nil {
			return json.Marshal(map[string]any{"status": status, "attempts": attempt + 1})
		}
		last = err
		if errors.Is(err, errPermanent) || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("webhook %s after %d attempt(s): %w", w.url, w.retries+1, last)
}

func (w *webhook) post(ctx context.Context, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errPermanent, err)
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", w.c.Key)
	h.Set("ce-source", w.c.Env.Source)
	h.Set("ce-type", WebhookType)
	h.Set("ce-time", time.Now().UTC().Format(time.RFC3339Nano))
	h.Set("ce-rule", w.c.Rule)
	if w.c.Match != nil && w.c.Match.Key != "" {
		h.Set("ce-subject", w.c.Match.Key)
	}
	if w.secret != "" {
		h.Set(SignatureHeader, Sign(w.secret, w.c.Key, body))
	}
	resp, err := w.c.Env.httpClient().Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return resp.StatusCode, nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return resp.StatusCode, fmt.Errorf("status %d", resp.StatusCode)
	default:
		return resp.StatusCode, fmt.Errorf("%w: status %d", errPermanent, resp.StatusCode)
	}
}

// Recover: a request may or may not have arrived; sending it again with
// the same ce-id lets the receiver de-duplicate, so the executor runs it.
func (w *webhook) Recover(context.Context, json.RawMessage) (json.RawMessage, bool, error) {
	return nil, false, nil
}

func (w *webhook) Rollback(context.Context, json.RawMessage, json.RawMessage) (json.RawMessage, error) {
	return json.RawMessage(`{"undone":false,"why":"a delivered request cannot be recalled"}`), nil
}
