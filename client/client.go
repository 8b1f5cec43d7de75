// Package client is the Go SDK for semprop's HTTP API: publish events,
// replay the journal, and follow the live stream with automatic resume.
//
// A Client is safe for concurrent use.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/semprop/semprop/event"
)

// Client talks to one semprop server.
type Client struct {
	base   string
	token  string
	source string
	hc     *http.Client
	direct *direct // publishes without net/http's transport; nil: through hc

	retries     int                          // stream connection attempts that may fail in a row; <0: no bound
	onReconnect func(err error, attempt int) // called before each reconnection, if set
}

// DefaultRetries is how many stream connection attempts in a row may fail
// (no answer, or a 5xx) before Stream gives up and returns the error.
const DefaultRetries = 10

// WithRetries returns a copy of c whose streams give up after n failed
// connection attempts in a row (0: the first failure; a negative n: never
// give up) and return the last attempt's error, e.g. the dial error. A
// connection that delivered the stream resets the count.
func (c *Client) WithRetries(n int) *Client {
	cc := *c
	cc.retries = n
	return &cc
}

// WithOnReconnect returns a copy of c whose streams call fn before each
// reconnection with the error that ended the previous connection and the
// number of the attempt in a row (1 for the first retry), e.g. to say so
// on stderr. fn is called from the streaming goroutine.
func (c *Client) WithOnReconnect(fn func(err error, attempt int)) *Client {
	cc := *c
	cc.onReconnect = fn
	return &cc
}

// New returns a client for the server at baseURL (e.g.
// "http://127.0.0.1:7878"); token, if not empty, is sent as a bearer token.
// Events it publishes without a source get DefaultSource().
//
// Its connections come from a pool shared by every Client New made that
// keeps up to MaxIdleConnsPerHost idle connections per server, so that
// many goroutines publishing at once through one Client reuse their
// connections (http.DefaultTransport keeps two, and closes the others'
// after each answer). To a plain http:// server that no proxy stands
// before (HTTP_PROXY, NO_PROXY), Publish and PublishBatch use HTTP/1.1
// keep-alive connections of their own, written and read by the calling
// goroutine: that spares net/http's hand-offs between goroutines, a good
// part of a publish's latency on a fast network. A request is sent again
// only when not a byte of it went out (a kept connection the server had
// closed), never after.
func New(baseURL, token string) *Client {
	c := NewWithHTTPClient(baseURL, token, &http.Client{Transport: sharedTransport()})
	c.direct = newDirect(c.base)
	return c
}

// MaxIdleConnsPerHost is how many idle connections to one server the
// transport of New keeps for reuse.
const MaxIdleConnsPerHost = 256

var sharedTransport = sync.OnceValue(func() *http.Transport {
	t := &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		t = dt.Clone()
	}
	t.MaxIdleConnsPerHost = MaxIdleConnsPerHost
	t.MaxIdleConns = max(t.MaxIdleConns, 4*MaxIdleConnsPerHost)
	return t
})

// NewWithHTTPClient is New with an HTTP client of the caller's, e.g. one
// whose transport trusts a private CA or presents a client certificate.
// Do not set a Timeout on it: streams last as long as they are read.
func NewWithHTTPClient(baseURL, token string, hc *http.Client) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, source: DefaultSource(), hc: hc, retries: DefaultRetries}
}

// WithSource returns a copy of c that gives events published without a
// source the CloudEvents source src (a URI reference naming the producer,
// e.g. "app://indexer"). Sources "semprop://…" are the daemon's own and
// the server refuses them from publishers.
func (c *Client) WithSource(src string) *Client {
	cc := *c
	cc.source = src
	return &cc
}

// DefaultSource is the source a Client gives events published without
// one: "urn:semprop:client:" followed by the host name.
func DefaultSource() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "urn:semprop:client"
	}
	return "urn:semprop:client:" + host
}

// Error is an error answer of the server.
type Error struct {
	Status  int
	Message string `json:"error"`
	Field   string `json:"field"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("server: %d: %s (field %s)", e.Status, e.Message, e.Field)
	}
	return fmt.Sprintf("server: %d: %s", e.Status, e.Message)
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, ctype string, hdr http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	return c.send(req, ctype, hdr)
}

// doPooled is do with a pooled body: the transport reads it through
// readers that hold it until they are closed.
func (c *Client) doPooled(ctx context.Context, method, path string, body *publishBody, ctype string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Body = body.reader()
	req.ContentLength = int64(len(body.buf))
	req.GetBody = func() (io.ReadCloser, error) { return body.reader(), nil }
	return c.send(req, ctype, nil)
}

// send sends req with the content type, the token and hdr; an answer
// that is not 2xx is returned as an *Error.
func (c *Client) send(req *http.Request, ctype string, hdr http.Header) (*http.Response, error) {
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, answerError(resp.StatusCode, b)
	}
	return resp, nil
}

// answerError is the *Error of an answer with status and body b.
func answerError(status int, b []byte) *Error {
	e := &Error{Status: status}
	if json.Unmarshal(b, e) != nil || e.Message == "" {
		e.Message = strings.TrimSpace(string(b))
	}
	return e
}

// Publish publishes one event and returns its seq once it is durable.
//
// CloudEvents requires an id and a source: an event without an ID (and
// SourceID) is sent with a new one, an event without a Source with the
// client's (WithSource); ev itself is not modified. An event whose strings
// are not valid UTF-8, or whose JSON Data is not one JSON value, is refused
// here with a *event.FieldError and not sent.
func (c *Client) Publish(ctx context.Context, ev *event.Event) (uint64, error) {
	body := getBody()
	defer body.release()
	var err error
	if body.buf, err = c.appendEvent(body.buf, ev); err != nil {
		return 0, err
	}
	seqs, err := c.post(ctx, body, event.MediaType)
	if err != nil {
		return 0, err
	}
	if len(seqs) != 1 {
		return 0, fmt.Errorf("client: server returned %d seqs for 1 event", len(seqs))
	}
	return seqs[0], nil
}

// PublishBatch publishes events as one batch and returns their seqs, in
// order, once all are durable. Each event is completed and checked as by
// Publish.
//
// The batch is encoded into one buffer taken from a pool (no allocation
// per event) and sent as one request.
func (c *Client) PublishBatch(ctx context.Context, evs []*event.Event) ([]uint64, error) {
	body := getBody()
	defer body.release()
	b := append(body.buf, '[')
	// The batch's new ids, made a chunk at a time: one lock of the id
	// generator per chunk, not per event.
	var ids [64]event.ID
	nextID := len(ids)
	now := time.Now().UnixNano() // one clock read for the batch's new ids
	for i, ev := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		n := len(b)
		var id event.ID
		if ev.ID.IsZero() && ev.SourceID == "" {
			if nextID == len(ids) {
				event.NewIDsAt(now, ids[:min(len(ids), len(evs)-i)])
				nextID = 0
			}
			id, nextID = ids[nextID], nextID+1
		}
		var err error
		if b, err = c.appendEventID(b, ev, id); err != nil {
			body.buf = b
			return nil, fmt.Errorf("client: event %d: %w", i, err)
		}
		if i == 0 && cap(b) < (len(b)-n+1)*len(evs)+1 {
			// Room for events of the first one's size: one buffer, not
			// one grown by doubling through a large batch.
			b = slices.Grow(b, (len(b)-n+1)*len(evs)+1-len(b))
		}
	}
	body.buf = append(b, ']')
	return c.post(ctx, body, event.MediaTypeBatch)
}

// appendEvent appends the JSON of a completed copy of ev (a new id and the
// client's source when missing), refusing what MarshalJSON refuses.
func (c *Client) appendEvent(b []byte, ev *event.Event) ([]byte, error) {
	var id event.ID
	if ev.ID.IsZero() && ev.SourceID == "" {
		id = event.NewID()
	}
	return c.appendEventID(b, ev, id)
}

// appendEventID is appendEvent giving the copy id (when not zero) as its
// new id.
func (c *Client) appendEventID(b []byte, ev *event.Event, id event.ID) ([]byte, error) {
	cp := *ev
	if !id.IsZero() {
		cp.ID = id
	}
	cp.Complete(c.source)
	return cp.AppendJSONChecked(b)
}

func (c *Client) post(ctx context.Context, body *publishBody, ctype string) ([]uint64, error) {
	const path = "/v1/events"
	var b []byte
	if c.direct != nil {
		var err error
		if b, err = c.direct.post(ctx, path, ctype, c.token, body.buf); err != nil {
			var se *Error
			if errors.As(err, &se) {
				return nil, err
			}
			return nil, &url.Error{Op: "Post", URL: c.base + path, Err: err}
		}
	} else {
		resp, err := c.doPooled(ctx, http.MethodPost, path, body, ctype)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if b, err = readAnswer(resp); err != nil {
			return nil, fmt.Errorf("client: read answer: %w", err)
		}
	}
	if seqs, ok := parseSeqs(b); ok {
		return seqs, nil
	}
	var out struct {
		Seqs []uint64 `json:"seqs"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("client: decode answer: %w", err)
	}
	return out.Seqs, nil
}

// Selector chooses events: a type pattern ("fs.>"), a path glob and a filter
// expression; empty fields select everything.
type Selector struct {
	Type string
	// Types are more type patterns: an event matching Type or any of
	// Types is selected (with the same Path and Filter).
	Types  []string
	Path   string
	Filter string
	// Settle, on a stream, collapses a burst of events on one subject
	// into one event (the last, with "count" and "first") sent once the
	// subject has been quiet this long. Replay ignores it.
	Settle time.Duration
}

func (s Selector) query(after uint64) url.Values {
	q := url.Values{}
	if s.Type != "" {
		q.Add("type", s.Type)
	}
	for _, t := range s.Types {
		q.Add("type", t)
	}
	if s.Path != "" {
		q.Set("path", s.Path)
	}
	if s.Filter != "" {
		q.Set("filter", s.Filter)
	}
	if s.Settle > 0 {
		q.Set("settle", s.Settle.String())
	}
	q.Set("after", strconv.FormatUint(after, 10))
	return q
}

// Replay calls fn for each durable event after seq `after` that sel
// selects, at most limit of them, and returns the last seq seen.
func (c *Client) Replay(ctx context.Context, sel Selector, after uint64, limit int, fn func(*event.Event) error) (uint64, error) {
	q := sel.query(after)
	q.Del("settle") // streams only
	q.Set("limit", strconv.Itoa(limit))
	resp, err := c.do(ctx, http.MethodGet, "/v1/events?"+q.Encode(), nil, "", nil)
	if err != nil {
		return after, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	last := after
	for sc.Scan() {
		ev := new(event.Event)
		if err := ev.UnmarshalJSON(sc.Bytes()); err != nil {
			return last, fmt.Errorf("%w after seq %d: %w", ErrMalformed, last, err)
		}
		last = ev.Seq
		if err := fn(ev); err != nil {
			return last, err
		}
	}
	return last, sc.Err()
}

// Stream follows the server's event stream from seq `after`, calling fn for
// each selected event in order, each exactly once: when the connection
// drops it reconnects (with backoff) and resumes after the last event it
// delivered. It returns when ctx is done, fn returns an error, the server
// rejects the request, an event cannot be decoded (ErrMalformed), or the
// server cannot be reached after the client's retries (WithRetries; the
// error is the last attempt's, e.g. the dial error).
func (c *Client) Stream(ctx context.Context, sel Selector, after uint64, fn func(*event.Event) error) error {
	return c.stream(ctx, sel, url.Values{"after": {strconv.FormatUint(after, 10)}}, after, "", fn)
}

// StreamNew is Stream from the server's durable end at the moment the
// first connection is made: new events only, as `semprop tail` shows them.
// A reconnection resumes from that position, so no event is lost between
// connections even before the first one arrives.
func (c *Client) StreamNew(ctx context.Context, sel Selector, fn func(*event.Event) error) error {
	return c.stream(ctx, sel, url.Values{"after": {"now"}}, 0, "", fn)
}

// StreamSince is Stream from the first event at or after a time: since is
// an RFC 3339 time or a duration back from now ("10m"); the server finds
// the position by a binary search over the journal. Reconnections resume
// after the last event delivered.
func (c *Client) StreamSince(ctx context.Context, sel Selector, since string, fn func(*event.Event) error) error {
	return c.stream(ctx, sel, url.Values{"since": {since}}, 0, "", fn)
}

// Member says how a stream joins a group (StreamGroup).
type Member struct {
	// Group is the group's name: its members share the events of the
	// group's route (the dynamic route of that name, or one made from
	// the first member's selector), each event to one live member.
	Group string
	// Name names the member (unique among live subscriptions); optional
	// with a Group. A Name alone makes a stream that receives what
	// routes naming it as a target send it.
	Name string
	// Weight is the member's share when the group's route is weighted.
	Weight int
}

// StreamGroup joins a group (or opens a named route target) and calls fn
// for each event the server routes to this member, once it is durable.
// Group streams are live: on reconnection the member joins again with new
// events only; events the server had written to a connection that broke
// are lost to the group (at most once; durable consumers are the
// at-least-once path), and everything not yet written goes to the other
// members. Re-routed events may arrive out of seq order. It returns as
// Stream does.
func (c *Client) StreamGroup(ctx context.Context, sel Selector, mb Member, fn func(*event.Event) error) error {
	q := url.Values{}
	if mb.Group != "" {
		q.Set("group", mb.Group)
	}
	if mb.Name != "" {
		q.Set("name", mb.Name)
	}
	if mb.Weight > 0 {
		q.Set("weight", strconv.Itoa(mb.Weight))
	}
	if len(q) == 0 {
		return errors.New("client: StreamGroup needs a group or a name")
	}
	return c.stream(ctx, sel, q, 0, "live", fn)
}

func (c *Client) stream(ctx context.Context, sel Selector, start url.Values, after uint64, mode string, fn func(*event.Event) error) error {
	backoff := 100 * time.Millisecond
	failed := 0
	for {
		last, pos, connected, err := c.streamOnce(ctx, sel, start, after, mode == "live", fn)
		if pos && mode != "live" { // resume from the last event, or the announced position
			if last > after {
				backoff = 100 * time.Millisecond
			}
			after, start = last, url.Values{"after": {strconv.FormatUint(last, 10)}}
		}
		var se *Error
		var fe fnError
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &fe):
			return fe.err
		case errors.Is(err, ErrMalformed):
			return err // the same event would come again
		case errors.As(err, &se) && se.Status/100 == 4:
			return err
		}
		if connected {
			failed = 0
		} else {
			failed++
			if c.retries >= 0 && failed > c.retries {
				return fmt.Errorf("client: stream: %d connection attempts failed: %w", failed, err)
			}
		}
		if c.onReconnect != nil {
			c.onReconnect(err, failed)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// ErrMalformed is wrapped by the error Stream, Replay and Fetch return when
// the server sends an event they cannot decode; Stream does not retry
// then, since the same event would come again.
var ErrMalformed = errors.New("client: malformed event from the server")

type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// streamOnce reads one connection of the stream, starting at start (the
// after=, since=, or group= parameters). It returns the last seq it
// delivered (or the position the server announced), whether it learnt a
// position at all, and whether the server answered with a stream. A live
// stream delivers every event it receives, whatever its seq.
func (c *Client) streamOnce(ctx context.Context, sel Selector, start url.Values, after uint64, live bool, fn func(*event.Event) error) (uint64, bool, bool, error) {
	q := sel.query(after)
	q.Del("after")
	for k, v := range start {
		q[k] = v
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/stream?"+q.Encode(), nil, "", http.Header{"Accept": {"text/event-stream"}})
	if err != nil {
		return after, false, false, err
	}
	pos := start.Get("after") != "" && start.Get("after") != "now"
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	sc.Split(scanSSELines)
	var evType, id string
	var data []byte
	hasData := false
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 { // end of message
			if evType == "end" {
				return after, pos, true, io.EOF
			}
			if !hasData && id != "" {
				// The stream's starting position (sent before any event).
				if n, err := strconv.ParseUint(id, 10, 64); err == nil && (!pos || n > after) {
					after, pos = n, true
				}
			}
			if hasData && evType != "error" {
				ev := new(event.Event)
				if err := ev.UnmarshalJSON(data); err != nil {
					return after, pos, true, fmt.Errorf("%w after seq %d: %w", ErrMalformed, after, err)
				}
				if live || ev.Seq > after || !pos {
					if err := fn(ev); err != nil {
						return after, pos, true, fnError{err}
					}
					after, pos = ev.Seq, true
				}
			}
			evType, id, data, hasData = "", "", data[:0], false
			continue
		}
		// A field is "name: value" or "name:value"; a line starting with
		// ':' is a comment, a line without ':' a field with an empty value.
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(name) {
		case "data":
			if hasData {
				data = append(data, '\n') // several data lines make one
			}
			data = append(data, value...)
			hasData = true
		case "event":
			evType = string(value)
		case "id":
			id = string(value)
		}
	}
	if err := sc.Err(); err != nil {
		return after, pos, true, err
	}
	return after, pos, true, io.ErrUnexpectedEOF
}

// scanSSELines splits a Server-Sent Events stream into lines: a line ends
// with CRLF, LF or a lone CR.
func scanSSELines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	i := bytes.IndexAny(data, "\r\n")
	switch {
	case i < 0:
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	case data[i] == '\n':
		return i + 1, data[:i], nil
	case i+1 < len(data):
		if data[i+1] == '\n' {
			return i + 2, data[:i], nil
		}
		return i + 1, data[:i], nil
	case atEOF:
		return i + 1, data[:i], nil
	}
	return 0, nil, nil // a CR at the end: wait to see whether LF follows
}

// Status is the server's readiness answer.
type Status struct {
	Ready      bool   `json:"ready"`
	Reason     string `json:"reason"`
	LastSeq    uint64 `json:"last_seq"`
	DurableSeq uint64 `json:"durable_seq"`
}

// Ready returns the server's readiness and journal position (GET /readyz).
func (c *Client) Ready(ctx context.Context) (Status, error) {
	var st Status
	resp, err := c.do(ctx, http.MethodGet, "/readyz", nil, "", nil)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}
