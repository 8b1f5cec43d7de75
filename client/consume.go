package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/semprop/semprop/event"
)

// Subscription describes a durable consumer on the server.
type Subscription struct {
	Name       string `json:"name"`
	Type       string `json:"type,omitempty"`
	Path       string `json:"path,omitempty"`
	Filter     string `json:"filter,omitempty"`
	AckWait    string `json:"ack_wait,omitempty"` // e.g. "30s"
	MaxDeliver int    `json:"max_deliver,omitempty"`
	StartSeq   uint64 `json:"start_seq,omitempty"`
	// Settle (a Go duration from 1ms to 1m, shorter than AckWait) makes
	// each fetch deliver one event per burst on a subject: the last, with
	// attributes count and first; acking it acks every event it stands
	// for.
	Settle string `json:"settle,omitempty"`
	// Deny lists subject globs whose events the consumer never gets.
	Deny []string `json:"deny,omitempty"`
	// Redact hides fields of the events the consumer delivers.
	Redact *RedactSpec `json:"redact,omitempty"`
	// Owner is the token that created the consumer; the server sets it
	// (a value sent with CreateSubscription is ignored).
	Owner string `json:"owner,omitempty"`
}

// RedactSpec hides fields of delivered events.
type RedactSpec struct {
	// Key keys the hashes of the "hash" action (HMAC-SHA256).
	Key   string       `json:"key,omitempty"`
	Rules []RedactRule `json:"rules"`
}

// RedactRule hides one field: subject (or path), oldpath, target, exe,
// comm, source, pid, tid, uid, gid, data or attrs.NAME, by "mask" ("***"),
// "hash" (a stable pseudonym) or "drop".
type RedactRule struct {
	Field  string `json:"field"`
	Action string `json:"action"`
	// Segments limits the action on a path to these components (from 0
	// after the leading "/"; -1 is the base name).
	Segments []int `json:"segments,omitempty"`
}

// CreateSubscription creates a durable consumer. It fails with a 409
// *Error if one of that name exists.
func (c *Client) CreateSubscription(ctx context.Context, sub Subscription) error {
	body, _ := json.Marshal(sub)
	resp, err := c.do(ctx, http.MethodPost, "/v1/subscriptions", body, "application/json", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// DeleteSubscription removes a durable consumer and its cursor.
func (c *Client) DeleteSubscription(ctx context.Context, name string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/subscriptions/"+url.PathEscape(name), nil, "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Delivery is an event handed to a durable consumer, with how often it has
// been delivered.
type Delivery struct {
	Event   *event.Event
	Attempt int
}

// Fetch takes up to max deliveries from the durable consumer name, waiting
// up to wait for the first. Every delivery must be acknowledged with Ack,
// or it is delivered again after the consumer's ack wait.
func (c *Client) Fetch(ctx context.Context, name string, max int, wait time.Duration) ([]Delivery, error) {
	q := url.Values{"max": {strconv.Itoa(max)}, "wait": {wait.String()}}
	resp, err := c.do(ctx, http.MethodPost, "/v1/subscriptions/"+url.PathEscape(name)+"/fetch?"+q.Encode(), nil, "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []Delivery
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	for sc.Scan() {
		var line struct {
			Attempt int             `json:"attempt"`
			Event   json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return out, fmt.Errorf("%w: fetch: %w", ErrMalformed, err)
		}
		ev := new(event.Event)
		if err := ev.UnmarshalJSON(line.Event); err != nil {
			return out, fmt.Errorf("%w: fetch: %w", ErrMalformed, err)
		}
		out = append(out, Delivery{Event: ev, Attempt: line.Attempt})
	}
	return out, sc.Err()
}

// Ack acknowledges deliveries of the durable consumer name by seq.
func (c *Client) Ack(ctx context.Context, name string, seqs ...uint64) error {
	body, _ := json.Marshal(map[string][]uint64{"seqs": seqs})
	resp, err := c.do(ctx, http.MethodPost, "/v1/subscriptions/"+url.PathEscape(name)+"/ack", body, "application/json", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Consume fetches from the durable consumer name in batches and calls fn
// for each delivery; a delivery is acknowledged when fn returns nil and
// left to be redelivered when it returns ErrRetry. Any other error stops
// Consume (the delivery is not acknowledged). It returns when ctx is done.
func (c *Client) Consume(ctx context.Context, name string, fn func(Delivery) error) error {
	for {
		ds, err := c.Fetch(ctx, name, 256, 5*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		var acks []uint64
		for _, d := range ds {
			switch err := fn(d); {
			case err == nil:
				acks = append(acks, d.Event.Seq)
			case err == ErrRetry:
			default:
				if len(acks) > 0 {
					_ = c.Ack(context.WithoutCancel(ctx), name, acks...)
				}
				return err
			}
		}
		if len(acks) > 0 {
			if err := c.Ack(ctx, name, acks...); err != nil {
				return err
			}
		}
	}
}

// ErrRetry, returned by a Consume callback, leaves the delivery
// unacknowledged so that the server delivers it again.
var ErrRetry = errors.New("client: retry later")
