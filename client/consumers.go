package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// Consumer describes a durable consumer on the server: the spec it was
// created with, its state and its dead letters.
type Consumer struct {
	Name        string       `json:"name"`
	Spec        Subscription `json:"spec"`
	Info        ConsumerInfo `json:"info"`
	DeadLetters []DeadLetter `json:"dead_letters"`
}

// ConsumerInfo is the state of a durable consumer. It is correct whether
// or not the consumer is open on the server (after a restart it is not
// until something fetches from it).
type ConsumerInfo struct {
	Name string `json:"name"`
	// Open says the server has the consumer open; Pending (delivered, not
	// acked) counts only then.
	Open     bool   `json:"open"`
	AckFloor uint64 `json:"ack_floor"` // every seq up to here is acked or does not match
	Pending  int    `json:"pending"`
	// Cursor is the last seq the consumer has read; Head the server's
	// durable seq; Lag = Head - Cursor.
	Cursor uint64 `json:"cursor"`
	Head   uint64 `json:"head"`
	Lag    uint64 `json:"lag"`
	// Backlog counts the events after Cursor that match the consumer and
	// are not acked; when BacklogCapped the server stopped counting and
	// Backlog is a lower bound.
	Backlog       uint64 `json:"backlog"`
	BacklogCapped bool   `json:"backlog_capped,omitempty"`
	Delivered     uint64 `json:"delivered"`
	Redelivered   uint64 `json:"redelivered"`
	Acked         uint64 `json:"acked"`
	DeadLettered  uint64 `json:"dead_lettered"`
	Gaps          uint64 `json:"gaps"` // events lost to retention before the consumer read them
}

// DeadLetter is an event a durable consumer gave up on after its
// max_deliver deliveries; read it again by its seq.
type DeadLetter struct {
	Seq        uint64    `json:"seq"`
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	Deliveries int       `json:"deliveries"`
	Time       time.Time `json:"time"`
}

// Consumers lists the durable consumers the caller owns (every one for an
// admin token).
func (c *Client) Consumers(ctx context.Context) ([]Consumer, error) {
	return c.consumers(ctx, "/v1/subscriptions")
}

// ConsumerInfo returns the durable consumer name; a missing one is a 404
// *Error.
func (c *Client) ConsumerInfo(ctx context.Context, name string) (Consumer, error) {
	cs, err := c.consumers(ctx, "/v1/subscriptions?"+url.Values{"name": {name}}.Encode())
	if err != nil {
		return Consumer{}, err
	}
	if len(cs) != 1 {
		return Consumer{}, &Error{Status: http.StatusNotFound, Message: "no consumer " + name, Field: "name"}
	}
	return cs[0], nil
}

func (c *Client) consumers(ctx context.Context, path string) ([]Consumer, error) {
	resp, err := c.do(ctx, http.MethodGet, path, nil, "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Subscriptions []Consumer `json:"subscriptions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	return body.Subscriptions, nil
}
