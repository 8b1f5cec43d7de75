package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/filter"
	"github.com/semprop/semprop/internal/propagate"
	"github.com/semprop/semprop/internal/route"
)

// consumerSpec is how a durable consumer is created over HTTP; it is stored
// with the consumer's cursor so that it survives restarts.
type consumerSpec struct {
	Name       string `json:"name"`
	Type       string `json:"type,omitempty"`
	Path       string `json:"path,omitempty"`
	Filter     string `json:"filter,omitempty"`
	AckWait    string `json:"ack_wait,omitempty"` // Go duration, default 30s
	MaxDeliver int    `json:"max_deliver,omitempty"`
	StartSeq   uint64 `json:"start_seq,omitempty"`
	// Deny lists subject globs whose events the consumer never gets.
	Deny []string `json:"deny,omitempty"`
	// Redact hides fields of the events the consumer delivers (after the
	// owner's own redaction).
	Redact *filter.RedactSpec `json:"redact,omitempty"`
	// Settle, a Go duration (1ms to 1m, shorter than the ack wait), makes
	// fetches return one delivery per burst on a subject (see
	// settle_consumer.go).
	Settle string `json:"settle,omitempty"`
	Owner  string `json:"owner,omitempty"` // the token that created it; set by the server
}

// both matches what both matchers match.
type both [2]propagate.Matcher

func (b both) Match(ev *event.Event) bool { return b[0].Match(ev) && b[1].Match(ev) }

// redactor compiles the spec's redaction (nil: none).
func (spec consumerSpec) redactor() (*filter.Redactor, *apiError) {
	if spec.Redact == nil {
		return nil, nil
	}
	r, err := filter.NewRedactor(*spec.Redact)
	if err != nil {
		return nil, &apiError{Field: "redact", Error: err.Error()}
	}
	return r, nil
}

// consumers keeps the durable consumers the API has open, by stored name.
type consumers struct {
	mu   sync.Mutex // also serializes creation, so max_consumers holds
	open map[string]*propagate.Consumer
	// redact holds the redaction of the open consumers that have one.
	redact map[string]*filter.Redactor
	// settle holds the settlers of the open consumers that settle.
	settle map[string]*consumerSettler
}

// openConsumer is an open consumer as a request uses it.
type openConsumer struct {
	c      *propagate.Consumer
	red    *filter.Redactor // nil: no redaction of its own
	settle *consumerSettler // nil: not settled
}

// consumerName is what a client may call a durable consumer.
var consumerName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// storedName is the name a token's consumer is stored under. Each token
// has its own namespace: with tokens configured the name is suffixed with
// a digest of the owner's name, so two tokens may both have a consumer
// "jobs" and neither learns that the other has one. Without tokens the
// name is stored as is.
func (s *Server) storedName(owner, name string) string {
	if !s.opts.Auth.Enabled() {
		return name
	}
	h := sha256.Sum256([]byte(owner))
	return name + "--" + hex.EncodeToString(h[:6])
}

// matcher builds what a consumer of spec matches: its selector, seen as
// its owner sees events. A consumer only ever holds what its owner may
// see, and its selector sees events as the owner does (after redaction):
// a stored selector on a hidden field cannot probe it either. When the
// owner's token no longer exists the error says so and the matcher is the
// selector alone (for reports, never for delivery).
func (s *Server) matcher(spec consumerSpec) (propagate.Matcher, *apiError) {
	var m propagate.Matcher = propagate.MatchAll
	if spec.Type != "" || spec.Path != "" || spec.Filter != "" {
		cs, err := route.ParseSelector(spec.Type, spec.Path, spec.Filter)
		if err != nil {
			return nil, &apiError{Field: selectorField(err), Error: err.Error()}
		}
		m = cs
	}
	if len(spec.Deny) > 0 {
		d, err := filter.Deny(spec.Deny...)
		if err != nil {
			return nil, &apiError{Field: "deny", Error: err.Error()}
		}
		if m == propagate.MatchAll {
			m = d
		} else {
			m = both{m, d}
		}
	}
	owner, ok := s.opts.Auth.Lookup(spec.Owner)
	if !ok {
		return m, &apiError{Field: "owner", Error: "the token that owns consumer " + spec.Name + " no longer exists"}
	}
	if m == propagate.MatchAll {
		return owner, nil
	}
	return owner.Select(m), nil
}

// selectorField names the part of a selector an error of
// route.ParseSelector is about ("type", "path" or "filter").
func selectorField(err error) string {
	if part := route.SelectorPart(err); part != "" {
		return part
	}
	msg := err.Error()
	for _, f := range []string{"type", "path", "filter"} {
		if strings.HasPrefix(msg, f+":") {
			return f
		}
	}
	return "selector"
}

func (s *Server) openConsumer(stored string, spec consumerSpec, meta json.RawMessage) (*propagate.Consumer, *apiError) {
	m, aerr := s.matcher(spec)
	if aerr != nil {
		return nil, aerr
	}
	wait, aerr := spec.ackWait()
	if aerr != nil {
		return nil, aerr
	}
	c, err := s.m.Consumer(propagate.ConsumerOptions{
		Name: stored, Matcher: m, AckWait: wait, MaxDeliver: spec.MaxDeliver, StartSeq: spec.StartSeq, Meta: meta,
	})
	if err != nil {
		return nil, &apiError{Field: "name", Error: err.Error()}
	}
	return c, nil
}

// Bounds of a consumer spec.
const (
	maxAckWait    = 24 * time.Hour
	maxMaxDeliver = 1000
)

// ackWait parses the spec's ack wait (0: the default).
func (spec consumerSpec) ackWait() (time.Duration, *apiError) {
	if spec.AckWait == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(spec.AckWait)
	if err != nil || d <= 0 || d > maxAckWait {
		return 0, &apiError{Field: "ack_wait", Error: "ack_wait " + strconv.Quote(spec.AckWait) + ": want a duration from 1ms to 24h, such as 30s"}
	}
	return d, nil
}

// decodeSpec reads a consumer spec strictly: one JSON object of known
// fields with values in range. The error names the field at fault.
func (s *Server) decodeSpec(w http.ResponseWriter, r *http.Request) (consumerSpec, *apiError) {
	var spec consumerSpec
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return spec, jsonFieldError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return spec, &apiError{Error: "malformed JSON: data after the consumer spec (send one object)"}
	}
	if !consumerName.MatchString(spec.Name) {
		return spec, &apiError{Field: "name", Error: "consumer name " + strconv.Quote(spec.Name) + ": want 1-64 of [a-zA-Z0-9_-]"}
	}
	if spec.MaxDeliver < 0 || spec.MaxDeliver > maxMaxDeliver {
		return spec, &apiError{Field: "max_deliver", Error: fmt.Sprintf("max_deliver %d: want 1-%d (0: the default, 5)", spec.MaxDeliver, maxMaxDeliver)}
	}
	if _, aerr := spec.ackWait(); aerr != nil {
		return spec, aerr
	}
	if _, aerr := spec.settle(); aerr != nil {
		return spec, aerr
	}
	if _, aerr := s.matcher(spec); aerr != nil && aerr.Field != "owner" {
		return spec, aerr
	}
	if _, aerr := spec.redactor(); aerr != nil {
		return spec, aerr
	}
	return spec, nil
}

// jsonFieldError describes a JSON decoding error, naming the field at
// fault, or "offset N" of malformed JSON.
func jsonFieldError(err error) *apiError {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &apiError{Error: fmt.Sprintf("body exceeds %d bytes", mbe.Limit)}
	case errors.As(err, &se):
		return &apiError{Field: fmt.Sprintf("offset %d", se.Offset), Error: fmt.Sprintf("malformed JSON at offset %d: %v", se.Offset, err)}
	case errors.As(err, &te):
		if te.Field == "" {
			return &apiError{Error: "malformed JSON: want an object, got " + te.Value}
		}
		return &apiError{Field: te.Field, Error: fmt.Sprintf("%s: want a %s, got %s", te.Field, te.Type, te.Value)}
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if name, err := strconv.Unquote(f); err == nil {
			return &apiError{Field: name, Error: "unknown field " + f}
		}
	}
	return &apiError{Error: "malformed JSON: " + err.Error()}
}

// storedSpec reads the spec a consumer was created with.
func (s *Server) storedSpec(name string) (consumerSpec, int, *apiError) {
	var spec consumerSpec
	meta, err := s.m.ConsumerMeta(name)
	if err != nil {
		return spec, http.StatusNotFound, &apiError{Field: "name", Error: err.Error()}
	}
	if err := json.Unmarshal(meta, &spec); err != nil {
		return spec, http.StatusInternalServerError, &apiError{Error: "stored consumer spec: " + err.Error()}
	}
	return spec, 0, nil
}

// resolve finds the consumer a request names: the caller's own (in its
// namespace, or stored before namespaces with the caller as owner); an
// admin may also name another token's consumer, with ?owner=TOKEN when
// several tokens have one of that name. Another token's consumer is "not
// found" to everyone else: nothing tells whether it exists.
func (s *Server) resolve(r *http.Request, name string) (stored string, spec consumerSpec, status int, aerr *apiError) {
	p := principal(r)
	notFound := &apiError{Field: "name", Error: "no consumer " + strconv.Quote(name)}
	if !consumerName.MatchString(name) {
		return "", spec, http.StatusNotFound, notFound
	}
	candidates := []string{s.storedName(p.Name, name)}
	if s.opts.Auth.Enabled() {
		candidates = append(candidates, name) // stored before namespaces
	}
	for _, id := range candidates {
		if sp, _, err := s.storedSpec(id); err == nil && sp.Owner == p.Name {
			return id, sp, 0, nil
		}
	}
	if !p.Admin() {
		return "", spec, http.StatusNotFound, notFound
	}
	owner := r.URL.Query().Get("owner")
	ids, err := s.m.ConsumerNames()
	if err != nil {
		return "", spec, http.StatusInternalServerError, &apiError{Error: "list consumers: " + err.Error()}
	}
	var found []string
	for _, id := range ids {
		sp, _, aerr := s.storedSpec(id)
		if aerr == nil && sp.Name == name && (owner == "" || sp.Owner == owner) {
			found = append(found, id)
			spec = sp
		}
	}
	switch len(found) {
	case 0:
		return "", spec, http.StatusNotFound, notFound
	case 1:
		return found[0], spec, 0, nil
	}
	return "", spec, http.StatusConflict, &apiError{Field: "owner", Error: fmt.Sprintf("%d tokens have a consumer %q: name the owner with ?owner=TOKEN", len(found), name)}
}

// consumer returns the open consumer a request names, opening it from its
// stored spec, if the caller may use it.
func (s *Server) consumer(r *http.Request, name string) (openConsumer, int, *apiError) {
	stored, spec, status, aerr := s.resolve(r, name)
	if aerr != nil {
		return openConsumer{}, status, aerr
	}
	s.cons.mu.Lock()
	defer s.cons.mu.Unlock()
	if c, ok := s.cons.open[stored]; ok {
		return openConsumer{c, s.cons.redact[stored], s.cons.settle[stored]}, 0, nil
	}
	c, aerr := s.openConsumer(stored, spec, nil)
	if aerr != nil {
		return openConsumer{}, http.StatusInternalServerError, aerr
	}
	s.cons.addLocked(stored, c, spec)
	return openConsumer{c, s.cons.redact[stored], s.cons.settle[stored]}, 0, nil
}

// addLocked records an open consumer, its redaction and its settler;
// cons.mu is held.
func (cs *consumers) addLocked(stored string, c *propagate.Consumer, spec consumerSpec) {
	cs.open[stored] = c
	if red, _ := spec.redactor(); red != nil {
		if cs.redact == nil {
			cs.redact = make(map[string]*filter.Redactor)
		}
		cs.redact[stored] = red
	}
	if quiet, _ := spec.settle(); quiet > 0 {
		if cs.settle == nil {
			cs.settle = make(map[string]*consumerSettler)
		}
		wait, _ := spec.ackWait()
		cs.settle[stored] = newConsumerSettler(c, quiet, wait)
	}
}

// owned counts the stored consumers of owner.
func (s *Server) owned(owner string) (int, error) {
	ids, err := s.m.ConsumerNames()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		if sp, _, aerr := s.storedSpec(id); aerr == nil && sp.Owner == owner {
			n++
		}
	}
	return n, nil
}

// createConsumer handles POST /v1/subscriptions. A token may own at most
// its max_consumers consumers (403 beyond).
func (s *Server) createConsumer(w http.ResponseWriter, r *http.Request) {
	spec, aerr := s.decodeSpec(w, r)
	if aerr != nil {
		writeJSON(w, http.StatusBadRequest, aerr)
		return
	}
	p := principal(r)
	spec.Owner = p.Name
	stored := s.storedName(p.Name, spec.Name)
	s.cons.mu.Lock()
	defer s.cons.mu.Unlock()
	for _, id := range []string{stored, spec.Name} {
		// Only the caller's own consumers conflict: another token's of the
		// same name lives in another namespace.
		if sp, _, aerr := s.storedSpec(id); aerr == nil && sp.Owner == p.Name {
			writeError(w, http.StatusConflict, "name", "consumer "+spec.Name+" exists")
			return
		}
	}
	n, err := s.owned(p.Name)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if n >= p.MaxConsumers() {
		writeError(w, http.StatusForbidden, "name", fmt.Sprintf("token %s owns %d consumers, its max_consumers; delete one first", p.Name, n))
		return
	}
	meta, _ := json.Marshal(spec)
	c, aerr := s.openConsumer(stored, spec, meta)
	if aerr != nil {
		writeJSON(w, http.StatusBadRequest, aerr)
		return
	}
	s.cons.addLocked(stored, c, spec)
	writeJSON(w, http.StatusCreated, spec)
}

// Bounds of the journal records read to count a consumer's backlog: for
// one consumer, and for each of a list.
const (
	infoBacklogLimit = 200_000
	listBacklogLimit = 10_000
)

// listConsumers handles GET /v1/subscriptions: the caller's consumers
// (every one for an admin), each with its spec, its dead letters and its
// state (open or not: right after a restart too). With ?name=NAME, only
// that consumer (404 when the caller has none of that name), its backlog
// counted further.
func (s *Server) listConsumers(w http.ResponseWriter, r *http.Request) {
	if name := r.URL.Query().Get("name"); name != "" {
		stored, spec, status, aerr := s.resolve(r, name)
		if aerr != nil {
			writeJSON(w, status, aerr)
			return
		}
		item, err := s.consumerItem(stored, spec, infoBacklogLimit)
		if err != nil {
			s.writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"subscriptions": []map[string]any{item}})
		return
	}
	ids, err := s.m.ConsumerNames()
	if err != nil {
		s.writeErr(w, err)
		return
	}
	p := principal(r)
	out := make([]map[string]any, 0, len(ids))
	for _, id := range ids {
		spec, _, aerr := s.storedSpec(id)
		if aerr != nil {
			continue
		}
		if !p.Admin() && spec.Owner != p.Name {
			continue // other tokens' consumers are not listed
		}
		item, err := s.consumerItem(id, spec, listBacklogLimit)
		if err != nil {
			continue // deleted meanwhile
		}
		out = append(out, item)
	}
	writeJSON(w, http.StatusOK, map[string]any{"subscriptions": out})
}

// consumerItem describes the consumer stored as id: its spec, dead
// letters and state, the backlog counted over at most limit records.
func (s *Server) consumerItem(id string, spec consumerSpec, limit int) (map[string]any, error) {
	m, _ := s.matcher(spec)
	info, err := s.m.ConsumerStatus(id, m, limit)
	if err != nil {
		return nil, err
	}
	info.Name = spec.Name // not the stored name
	if spec.Redact != nil && spec.Redact.Key != "" {
		red := *spec.Redact
		red.Key = "***" // a secret: shown to no one
		spec.Redact = &red
	}
	dl, err := s.m.ConsumerDeadLetters(id)
	if err != nil || dl == nil {
		dl = []propagate.DeadLetter{}
	}
	return map[string]any{"name": spec.Name, "spec": spec, "info": info, "dead_letters": dl}, nil
}

// deleteConsumer handles DELETE /v1/subscriptions/{name}.
func (s *Server) deleteConsumer(w http.ResponseWriter, r *http.Request) {
	stored, _, status, aerr := s.resolve(r, r.PathValue("name"))
	if aerr != nil {
		writeJSON(w, status, aerr)
		return
	}
	s.cons.mu.Lock()
	delete(s.cons.open, stored)
	delete(s.cons.redact, stored)
	delete(s.cons.settle, stored)
	s.cons.mu.Unlock()
	if err := s.m.DeleteConsumer(stored); err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, propagate.ErrNoConsumer) {
			status = http.StatusNotFound
		}
		writeError(w, status, "name", err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// fetch handles POST /v1/subscriptions/{name}/fetch?max=N&wait=DUR: up to
// max (default 100, at most 10,000) deliveries as NDJSON, waiting up to
// wait (default 5s, at most 60s) for the first. Each line is the event's
// CloudEvents JSON with a "deliveries" count added ({"attempt":N,"event":{…}}).
// A settled consumer's deliveries are its bursts (settle_consumer.go).
func (s *Server) fetch(w http.ResponseWriter, r *http.Request) {
	oc, status, aerr := s.consumer(r, r.PathValue("name"))
	c, red := oc.c, oc.red
	if aerr != nil {
		writeJSON(w, status, aerr)
		return
	}
	q := r.URL.Query()
	max := 100
	if v := q.Get("max"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "max", "max must be 1..10000")
			return
		}
		max = n
	}
	wait := 5 * time.Second
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Minute {
			writeError(w, http.StatusBadRequest, "wait", "wait must be a duration up to 60s")
			return
		}
		wait = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	var ds []propagate.Delivery
	var err error
	if oc.settle != nil {
		ds, err = oc.settle.fetch(ctx, max)
	} else {
		ds, err = c.Fetch(ctx, max)
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		s.writeErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	buf := make([]byte, 0, 1024)
	for _, d := range ds {
		buf = append(buf[:0], `{"attempt":`...)
		buf = strconv.AppendInt(buf, int64(d.Attempt), 10)
		buf = append(buf, `,"event":`...)
		ev := principal(r).Redact(d.Event)
		if red != nil {
			ev = red.Apply(ev)
		}
		buf = ev.AppendJSON(buf)
		buf = append(buf, "}\n"...)
		if _, err := w.Write(buf); err != nil {
			return
		}
	}
}

// ack handles POST /v1/subscriptions/{name}/ack with {"seqs":[...]}. For
// a settled consumer, acking a burst's seq acks every event of the burst.
func (s *Server) ack(w http.ResponseWriter, r *http.Request) {
	oc, status, aerr := s.consumer(r, r.PathValue("name"))
	c := oc.c
	if aerr != nil {
		writeJSON(w, status, aerr)
		return
	}
	var body struct {
		Seqs []uint64 `json:"seqs"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		aerr := jsonFieldError(err)
		if aerr.Field == "" {
			aerr.Field = "seqs"
		}
		aerr.Error = `want {"seqs":[...]}: ` + aerr.Error
		writeJSON(w, http.StatusBadRequest, aerr)
		return
	}
	ack := c.Ack
	if oc.settle != nil {
		ack = oc.settle.ack
	}
	for _, seq := range body.Seqs {
		if err := ack(seq); err != nil {
			s.writeErr(w, err)
			return
		}
	}
	info := c.Info()
	info.Name = r.PathValue("name") // not the stored name
	writeJSON(w, http.StatusOK, info)
}
