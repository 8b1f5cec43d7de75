package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/propagate"
	"github.com/semprop/semprop/internal/route"
)

// ingest handles POST /v1/events in the three CloudEvents HTTP modes:
// structured (application/cloudevents+json), batch
// (application/cloudevents-batch+json) and binary (ce-* headers, body as
// data). It answers {"seqs":[...]} once every event is durable.
func (s *Server) ingest(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeError(w, http.StatusServiceUnavailable, "", "not ready: "+*s.notReady.Load())
		return
	}
	body, release, err := readBody(w, r, s.opts.MaxBody)
	defer release() // the decoders copy what they keep: nothing refers to body after this
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("body exceeds %d bytes", mbe.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "", "read body: "+err.Error())
		return
	}
	ct := r.Header.Get("Content-Type")
	mt, _, _ := parseMediaType(ct)
	var evs []*event.Event
	switch {
	case r.Header.Get("Ce-Specversion") != "":
		ev, err := fromBinaryMode(r.Header, mt, ct, body)
		if err != nil {
			s.writeErr(w, err)
			return
		}
		evs = []*event.Event{ev}
	case mt == event.MediaType || (mt == "application/json" && firstNonSpace(body) == '{'):
		ev := new(event.Event)
		if err := ev.UnmarshalJSON(body); err != nil {
			s.writeErr(w, err)
			return
		}
		evs = []*event.Event{ev}
	case mt == event.MediaTypeBatch || (mt == "application/json" && firstNonSpace(body) == '['):
		if evs, err = event.ParseJSONBatch(body); err != nil {
			s.writeErr(w, err)
			return
		}
	default:
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type",
			fmt.Sprintf("unsupported media type %q: use %s, %s, or binary mode (ce-* headers)", ct, event.MediaType, event.MediaTypeBatch))
		return
	}
	if len(evs) == 0 {
		writeError(w, http.StatusBadRequest, "", "empty batch")
		return
	}
	if len(evs) > s.opts.MaxBatch {
		writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("batch of %d events exceeds the limit of %d", len(evs), s.opts.MaxBatch))
		return
	}
	p := principal(r)
	for i, ev := range evs {
		if field, err := p.CheckPublish(ev); err != nil {
			if len(evs) > 1 {
				field = "[" + strconv.Itoa(i) + "]." + field
			}
			writeError(w, http.StatusForbidden, field, err.Error())
			return
		}
		if ev.Boundary == event.BoundaryNone {
			ev.Boundary = event.BoundaryUser
		}
		ev.Boundaries = ev.Boundaries.Add(ev.Boundary)
		ev.Seq = 0 // assigned here, never by the producer
		if err := ev.ValidateDecoded(s.opts.Limits); err != nil {
			var fe *event.FieldError
			if len(evs) > 1 && errors.As(err, &fe) {
				fe.Field = "[" + strconv.Itoa(i) + "]." + fe.Field
			}
			s.writeErr(w, err)
			return
		}
	}
	if err := s.m.PublishBatch(r.Context(), evs); err != nil {
		s.writeErr(w, err)
		return
	}
	answer := appendSeqs(make([]byte, 0, 12+21*len(evs)), evs)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// Announced, the answer goes out in one piece rather than chunked.
	h.Set("Content-Length", strconv.Itoa(len(answer)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(answer)
}

// appendSeqs appends ingest's answer, {"seqs":[...]} and a line feed, as
// writeJSON would encode it, without reflection.
func appendSeqs(b []byte, evs []*event.Event) []byte {
	b = append(b, `{"seqs":[`...)
	for i, ev := range evs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, ev.Seq, 10)
	}
	return append(b, "]}\n"...)
}

// readBody reads r's body, at most limit bytes (a longer one is an
// *http.MaxBytesError). A body that announces its length is read into a
// pooled buffer of at least that size rather than one grown by doubling;
// the caller calls release (also after an error) once nothing refers to
// the body any more.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) (body []byte, release func(), err error) {
	rd := http.MaxBytesReader(w, r.Body, limit)
	if n := r.ContentLength; n > 0 && n <= limit {
		bp := getBodyBuf(int(n))
		b := (*bp)[:n]
		if _, err := io.ReadFull(rd, b); err != nil {
			putBodyBuf(bp)
			return nil, noRelease, err // a body shorter than announced: io.ErrUnexpectedEOF
		}
		return b, func() { putBodyBuf(bp) }, nil // net/http ends the body at its Content-Length
	}
	b, err := io.ReadAll(rd)
	return b, noRelease, err
}

func noRelease() {}

// maxPooledBody bounds the request-body buffers kept for reuse.
const maxPooledBody = 4 << 20

var bodyBufs sync.Pool // of *[]byte

// getBodyBuf returns a buffer of capacity at least n, pooled when it is
// not too large.
func getBodyBuf(n int) *[]byte {
	if n <= maxPooledBody {
		if bp, ok := bodyBufs.Get().(*[]byte); ok {
			if cap(*bp) >= n {
				return bp
			}
			bodyBufs.Put(bp) // too small for this one; another may fit
		}
	}
	b := make([]byte, n)
	return &b
}

func putBodyBuf(bp *[]byte) {
	if cap(*bp) <= maxPooledBody {
		bodyBufs.Put(bp)
	}
}

// parseMediaType is mime.ParseMediaType without its allocations for the
// media types publishers send as they are (lowercase, no parameters).
func parseMediaType(ct string) (string, map[string]string, error) {
	switch ct {
	case "application/json", event.MediaType, event.MediaTypeBatch:
		return ct, nil, nil
	}
	return mime.ParseMediaType(ct)
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return c
		}
	}
	return 0
}

// fromBinaryMode builds an event from ce-* headers and the body as data
// (event.ParseBinaryMode: a JSON Content-Type requires a JSON body).
func fromBinaryMode(h http.Header, _, _ string, body []byte) (*event.Event, error) {
	return event.ParseBinaryMode(h, body)
}

// jsonQuote quotes s as a JSON string, without escaping <, > and &.
func jsonQuote(s string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// selection holds the query parameters every read takes.
type selection struct {
	after   uint64
	matcher propagate.Matcher
	sel     route.Selector // as given, for a group created by this stream

	// A live stream (group= or name=) is a routed subscription, not a
	// read of the journal: it has no starting point.
	group, name string
	weight      int

	// settle, when positive, collapses bursts per subject (settle.go).
	settle time.Duration
}

// live reports whether the stream is a member of a group or a named
// route target.
func (sel selection) live() bool { return sel.group != "" || sel.name != "" }

// from is the first seq a read after sel.after returns. after is any
// uint64: the largest is "after everything" and does not wrap to the
// beginning.
func (sel selection) from() uint64 {
	if sel.after == math.MaxUint64 {
		return math.MaxUint64 // no event will ever have a larger seq
	}
	return sel.after + 1
}

// parseSelection reads the selector and the starting point of a read.
// The start is, in order of precedence: the Last-Event-ID header (a
// reconnecting browser's EventSource repeats its original URL, so the
// header must win over ?after=), ?after=SEQ, ?after=now (the durable end
// of the journal: new events only), ?since=TIME (RFC 3339, or a duration
// such as 10m back from now: after the seq before the first event of that
// time, propagate.Manager.SeqBefore), and otherwise the default: now for
// a stream, the beginning (after=0) for a replay. after and since
// together are refused. A stream with group= or name= is live and takes
// neither (Last-Event-ID is ignored: a member rejoins at now).
func (s *Server) parseSelection(r *http.Request, stream bool) (selection, *apiError) {
	q := r.URL.Query()
	var sel selection
	// Several type= parameters select any of the patterns.
	if q.Get("after") != "" && q.Get("since") != "" {
		return sel, &apiError{Field: "since", Error: "after and since exclude each other"}
	}
	if !stream && q.Get("settle") != "" {
		return sel, &apiError{Field: "settle", Error: "settle applies to streams (/v1/stream, /v1/ws), not to a replay"}
	}
	if stream {
		sel.group, sel.name = q.Get("group"), q.Get("name")
		if v := q.Get("weight"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1<<16 {
				return sel, &apiError{Field: "weight", Error: "weight must be 1..65536"}
			}
			if sel.group == "" {
				return sel, &apiError{Field: "weight", Error: "weight needs group"}
			}
			sel.weight = n
		}
		if v := q.Get("settle"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > maxSettle {
				return sel, &apiError{Field: "settle", Error: "settle must be a duration from 1ns to 1m (e.g. 200ms)"}
			}
			if sel.live() {
				return sel, &apiError{Field: "settle", Error: "a stream with group or name is live and cannot settle"}
			}
			sel.settle = d
		}
		if sel.live() {
			for _, f := range []string{"after", "since"} {
				if q.Get(f) != "" {
					return sel, &apiError{Field: f, Error: "a stream with group or name is live: it starts now and takes no " + f}
				}
			}
		}
	}
	parse := func(field, v string) *apiError {
		if v == "now" {
			sel.after = s.m.Journal().DurableSeq()
			return nil
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return &apiError{Field: field, Error: field + " must be a sequence number or \"now\""}
		}
		sel.after = n
		return nil
	}
	switch {
	case sel.live():
	case r.Header.Get("Last-Event-ID") != "":
		if err := parse("Last-Event-ID", r.Header.Get("Last-Event-ID")); err != nil {
			return sel, err
		}
	case q.Get("after") != "":
		if err := parse("after", q.Get("after")); err != nil {
			return sel, err
		}
	case q.Get("since") != "":
		at, err := parseSince(q.Get("since"), time.Now())
		if err != nil {
			return sel, &apiError{Field: "since", Error: err.Error()}
		}
		n, err := s.m.SeqBefore(at)
		if err != nil {
			return sel, &apiError{Field: "since", Error: err.Error()}
		}
		sel.after = n
	case stream:
		sel.after = s.m.Journal().DurableSeq()
	}
	sel.sel = route.Selector{Type: q.Get("type"), Path: q.Get("path"), Filter: q.Get("filter")}
	types := q["type"]
	if len(types) > 1 && sel.group != "" {
		return sel, &apiError{Field: "type", Error: "a group member takes one type pattern: its group's route has one"}
	}
	if len(types) > maxTypes {
		return sel, &apiError{Field: "type", Error: fmt.Sprintf("at most %d type patterns", maxTypes)}
	}
	m, err := compileSelector(q.Get("type"), q.Get("path"), q.Get("filter"))
	if err != nil {
		return sel, err
	}
	if len(types) > 1 {
		// Several type patterns: an event matching any of them (with the
		// same path and filter).
		anyOf := make(anyMatcher, 0, len(types))
		for _, typ := range types {
			mt, err := compileSelector(typ, q.Get("path"), q.Get("filter"))
			if err != nil {
				return sel, err
			}
			anyOf = append(anyOf, mt)
		}
		m = anyOf
	}
	// What the token may see, with the selector evaluated on the event as
	// the token sees it (redacted): hidden fields cannot be probed.
	p := principal(r)
	if m == propagate.MatchAll {
		sel.matcher = p // nothing to evaluate on the redacted event
	} else {
		sel.matcher = p.Select(m)
	}
	return sel, nil
}

// parseSince reads since=: an RFC 3339 time, or a positive duration back
// from now ("10m", "1h30m").
func parseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("since must be an RFC 3339 time or a duration such as 10m, not %q", v)
	}
	return now.Add(-d), nil
}

// replay handles GET /v1/events: durable events after `after` as NDJSON,
// at most `limit` (default 1000, at most 100,000) of them, without waiting
// for new ones.
func (s *Server) replay(w http.ResponseWriter, r *http.Request) {
	sel, aerr := s.parseSelection(r, false)
	if aerr != nil {
		writeJSON(w, http.StatusBadRequest, aerr)
		return
	}
	limit := 1000
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			writeError(w, http.StatusBadRequest, "limit", "limit must be 1..100000")
			return
		}
		limit = n
	}
	rd, err := s.m.Reader(sel.from())
	if err != nil {
		writeError(w, http.StatusGone, "after", err.Error())
		return
	}
	defer rd.Close()
	p := principal(r)
	w.Header().Set("Content-Type", "application/x-ndjson")
	bw := bufio.NewWriterSize(w, 64<<10)
	var ev event.Event
	buf := make([]byte, 0, 1024)
	ctx := r.Context()
	for n, scanned := 0, 0; n < limit; scanned++ {
		// Stop the moment the client is gone: a selective replay may scan
		// far more events than it sends.
		if scanned%256 == 255 && ctx.Err() != nil {
			return
		}
		ok, err := rd.TryNext(&ev)
		if err != nil {
			s.log.Error("replay", "err", err)
			break
		}
		if !ok {
			break
		}
		if !sel.matcher.Match(&ev) {
			continue
		}
		buf = append(p.Redact(&ev).AppendJSON(buf[:0]), '\n')
		if _, err := bw.Write(buf); err != nil {
			return
		}
		n++
	}
	_ = bw.Flush()
}

// stream handles GET /v1/stream: Server-Sent Events of durable events after
// `after` (or Last-Event-ID), following the journal live. Each message's id
// is the event's seq, so a client that reconnects with Last-Event-ID
// resumes with no gap and no duplicate. A comment line is sent every
// Heartbeat; on shutdown the stream ends with an "end" event.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	sel, src, done, ok := s.startStream(w, r)
	if !ok {
		return
	}
	defer done()
	p := principal(r)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	// The stream's position first, as an id without data: a client that
	// reconnects before any event came (a browser's EventSource, the Go
	// client) resumes with Last-Event-ID from where this stream started,
	// not from a later "now".
	if !sel.live() {
		fmt.Fprintf(bw, "id: %d\n\n", sel.after)
	}
	buf := make([]byte, 0, 1024)
	s.follow(r.Context(), src, sel, follower{
		send: func(ev *event.Event) error {
			buf = append(buf[:0], "id: "...)
			buf = strconv.AppendUint(buf, ev.Seq, 10)
			if event.ValidType(ev.Type) { // never a raw line break in the framing
				buf = append(buf, "\nevent: "...)
				buf = append(buf, ev.Type...)
			}
			buf = append(buf, "\ndata: "...)
			buf = p.Redact(ev).AppendJSON(buf)
			buf = append(buf, "\n\n"...)
			_, err := bw.Write(buf)
			return err
		},
		flush: func() error {
			if err := bw.Flush(); err != nil {
				return err
			}
			return rc.Flush()
		},
		heartbeat: func() error {
			_, err := bw.WriteString(": heartbeat\n\n")
			return err
		},
		end: func(reason string, err error) {
			if err != nil {
				fmt.Fprintf(bw, "event: error\ndata: {\"error\":%s}\n\n", jsonQuote(err.Error()))
			} else {
				fmt.Fprintf(bw, "event: end\ndata: {\"reason\":%s}\n\n", jsonQuote(reason))
			}
			_ = bw.Flush()
			_ = rc.Flush()
		},
	})
}

// startStream does what SSE and WebSocket streams share before they
// write: parse the selection, count the stream against the caller's cap
// (429 when it has too many), and open its source: a journal reader after
// the selection's seq (410 when retention removed it), or for a live
// stream (group=, name=) a routed subscription (409 when the name is
// taken or the group's route conflicts). On success the caller must call
// done when the stream ends; otherwise the error is answered.
func (s *Server) startStream(w http.ResponseWriter, r *http.Request) (sel selection, src streamSource, done func(), ok bool) {
	sel, aerr := s.parseSelection(r, true)
	if aerr != nil {
		writeJSON(w, http.StatusBadRequest, aerr)
		return sel, src, nil, false
	}
	p := principal(r)
	release, ok := p.OpenStream()
	if !ok {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "", "token "+p.Name+" has too many open streams")
		return sel, src, nil, false
	}
	if sel.live() {
		sub, err := s.m.Subscribe(propagate.SubscribeOptions{
			Name: sel.name, Group: sel.group, Weight: sel.weight, Selector: sel.sel,
			Matcher: sel.matcher, RoutedOnly: true,
		})
		if err != nil {
			release()
			field := "group"
			if sel.group == "" {
				field = "name"
			}
			status := http.StatusConflict
			if errors.Is(err, route.ErrBadRoute) || errors.Is(err, route.ErrBadSelector) {
				status = http.StatusBadRequest
			}
			writeError(w, status, field, err.Error())
			return sel, src, nil, false
		}
		src.sub = sub
		// The subscription is closed by followLive, which hands back what
		// it did not send (Leave); Close here only covers an early return.
		return sel, src, func() { sub.Close(); release() }, true
	}
	rd, err := s.m.Reader(sel.from())
	if err != nil {
		release()
		writeError(w, http.StatusGone, "after", err.Error())
		return sel, src, nil, false
	}
	src.rd = rd
	return sel, src, func() { rd.Close(); release() }, true
}

// streamSource is where a stream's events come from: the durable journal,
// or a live routed subscription.
type streamSource struct {
	rd  *propagate.Reader
	sub *propagate.Subscription
}

// follower is how one stream transport writes. send buffers one event,
// flush pushes what is buffered to the client, heartbeat keeps an idle
// connection alive, end says why the stream ends (err != nil: a failure).
type follower struct {
	send      func(*event.Event) error
	flush     func() error
	heartbeat func() error
	end       func(reason string, err error)
}

// follow streams durable events from src until the client goes away (ctx)
// or the server closes.
func (s *Server) follow(ctx context.Context, src streamSource, sel selection, f follower) {
	if src.sub != nil {
		s.followLive(ctx, src.sub, f)
		return
	}
	if sel.settle > 0 {
		s.followSettled(ctx, src.rd, sel, f)
		return
	}
	s.followJournal(ctx, src.rd, sel, f)
}

// followJournal streams durable events from rd that sel selects. It
// drains what is durable, flushes once, then waits for the journal to
// advance: one flush per burst.
func (s *Server) followJournal(ctx context.Context, rd *propagate.Reader, sel selection, f follower) {
	if err := f.flush(); err != nil {
		return
	}
	j := s.m.Journal()
	heartbeat := time.NewTicker(s.opts.Heartbeat)
	defer heartbeat.Stop()
	var ev event.Event
	for {
		changed := j.Changed()
		for {
			ok, err := rd.TryNext(&ev)
			if err != nil {
				s.log.Error("stream", "err", err)
				f.end("", err)
				return
			}
			if !ok {
				break
			}
			if !sel.matcher.Match(&ev) {
				continue
			}
			if err := f.send(&ev); err != nil {
				return
			}
		}
		if err := f.flush(); err != nil {
			return
		}
		select {
		case <-changed:
		case <-heartbeat.C:
			if err := f.heartbeat(); err != nil {
				return
			}
		case <-ctx.Done():
			return // client gone
		case <-s.done:
			f.end("shutdown", nil)
			return
		}
	}
}

// liveBatch bounds the events a live stream takes from its queue at once.
const liveBatch = 256

// followLive streams what the routes send to sub (a group member or a
// named target), only once each event is durable: everything that leaves
// the process is durable, as on the journal streams. It takes a batch
// from the queue, waits for the journal's durable seq to reach the
// batch's highest seq, then writes and flushes the batch. When the stream
// ends, the events it took and did not hand to the connection, and those
// still queued, go back to the group's live members (Subscription.Leave);
// those handed to the connection are the live stream's at-most-once
// window.
func (s *Server) followLive(ctx context.Context, sub *propagate.Subscription, f follower) {
	buf := make([]*event.Event, liveBatch)
	var pending []*event.Event // taken, not handed to the connection
	defer func() { sub.Leave(pending) }()
	if err := f.flush(); err != nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	j := s.m.Journal()
	ended := func() bool {
		select {
		case <-s.done:
			f.end("shutdown", nil)
			return true
		default:
			return false
		}
	}
	for {
		wctx, wcancel := context.WithTimeout(ctx, s.opts.Heartbeat)
		n, err := sub.NextBatch(wctx, buf)
		wcancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			if err := f.heartbeat(); err != nil {
				return
			}
			if err := f.flush(); err != nil {
				return
			}
			continue
		case errors.Is(err, propagate.ErrClosed):
			f.end("closed", nil)
			return
		case err != nil:
			ended()
			return
		}
		pending = append(pending[:0], buf[:n]...)
		clear(buf[:n])
		last := uint64(0)
		for _, ev := range pending {
			last = max(last, ev.Seq)
		}
		// Durable first: wait on the journal, which says when its durable
		// seq advances or it fails.
		for {
			ch := j.Changed()
			if j.DurableSeq() >= last {
				break
			}
			if jerr := j.Err(); jerr != nil {
				s.log.Error("stream", "err", jerr)
				f.end("", errors.New("the journal is unavailable"))
				return
			}
			select {
			case <-ch:
			case <-ctx.Done():
				ended()
				return
			}
		}
		for len(pending) > 0 {
			ev := pending[0]
			pending = pending[1:]
			if err := f.send(ev); err != nil {
				return // ev was handed to the connection: not re-routed
			}
		}
		if err := f.flush(); err != nil {
			return
		}
	}
}

// maxTypes bounds the type= parameters of one read.
const maxTypes = 32

// anyMatcher matches an event any of its matchers matches.
type anyMatcher []propagate.Matcher

func (a anyMatcher) Match(ev *event.Event) bool {
	for _, m := range a {
		if m.Match(ev) {
			return true
		}
	}
	return false
}

// compileSelector turns the type/path/filter query parameters into a
// matcher (route.ParseSelector); errors name the parameter at fault.
func compileSelector(typ, path, filter string) (propagate.Matcher, *apiError) {
	if typ == "" && path == "" && filter == "" {
		return propagate.MatchAll, nil
	}
	cs, err := route.ParseSelector(typ, path, filter)
	if err != nil {
		field, _, _ := strings.Cut(err.Error(), ":")
		switch field {
		case "type", "path", "filter":
		default:
			field = ""
		}
		return nil, &apiError{Field: field, Error: err.Error()}
	}
	return cs, nil
}
