package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/semprop/semprop/internal/auth"
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
	Owner      string `json:"owner,omitempty"` // the token that created it; set by the server
}

// consumers keeps the durable consumers the API has open.
type consumers struct {
	mu   sync.Mutex
	open map[string]*propagate.Consumer
}

func (s *Server) openConsumer(spec consumerSpec, meta json.RawMessage) (*propagate.Consumer, *apiError) {
	var m propagate.Matcher = propagate.MatchAll
	if spec.Type != "" || spec.Path != "" || spec.Filter != "" {
		cs, err := route.ParseSelector(spec.Type, spec.Path, spec.Filter)
		if err != nil {
			return nil, &apiError{Field: "selector", Error: err.Error()}
		}
		m = cs
	}
	// A consumer only ever holds what its owner may see.
	owner, ok := s.opts.Auth.Lookup(spec.Owner)
	if !ok {
		return nil, &apiError{Field: "owner", Error: "the token that owns consumer " + spec.Name + " no longer exists"}
	}
	if owner != auth.Anonymous {
		m = both{owner, m}
	}
	var wait time.Duration
	if spec.AckWait != "" {
		d, err := time.ParseDuration(spec.AckWait)
		if err != nil || d <= 0 {
			return nil, &apiError{Field: "ack_wait", Error: "ack_wait must be a positive duration such as 30s"}
		}
		wait = d
	}
	c, err := s.m.Consumer(propagate.ConsumerOptions{
		Name: spec.Name, Matcher: m, AckWait: wait, MaxDeliver: spec.MaxDeliver, StartSeq: spec.StartSeq, Meta: meta,
	})
	if err != nil {
		return nil, &apiError{Field: "name", Error: err.Error()}
	}
	return c, nil
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

// mayUse reports whether the caller may use the consumer with this spec:
// its owner or an admin.
func mayUse(r *http.Request, spec consumerSpec) (int, *apiError) {
	p := principal(r)
	if p.Admin() || p.Name == spec.Owner {
		return 0, nil
	}
	return http.StatusForbidden, &apiError{Field: "name", Error: "consumer " + spec.Name + " belongs to another token"}
}

// consumer returns the open consumer name, opening it from its stored
// spec, if the caller may use it.
func (s *Server) consumer(r *http.Request, name string) (*propagate.Consumer, int, *apiError) {
	spec, status, aerr := s.storedSpec(name)
	if aerr != nil {
		return nil, status, aerr
	}
	if status, aerr := mayUse(r, spec); aerr != nil {
		return nil, status, aerr
	}
	s.cons.mu.Lock()
	defer s.cons.mu.Unlock()
	if c, ok := s.cons.open[name]; ok {
		return c, 0, nil
	}
	c, aerr := s.openConsumer(spec, nil)
	if aerr != nil {
		return nil, http.StatusInternalServerError, aerr
	}
	s.cons.open[name] = c
	return c, 0, nil
}

// createConsumer handles POST /v1/subscriptions.
func (s *Server) createConsumer(w http.ResponseWriter, r *http.Request) {
	var spec consumerSpec
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&spec); err != nil {
		writeError(w, http.StatusBadRequest, "", "malformed JSON: "+err.Error())
		return
	}
	if _, err := s.m.ConsumerMeta(spec.Name); err == nil {
		writeError(w, http.StatusConflict, "name", "consumer "+spec.Name+" exists")
		return
	}
	spec.Owner = principal(r).Name
	meta, _ := json.Marshal(spec)
	s.cons.mu.Lock()
	defer s.cons.mu.Unlock()
	c, aerr := s.openConsumer(spec, meta)
	if aerr != nil {
		writeJSON(w, http.StatusBadRequest, aerr)
		return
	}
	s.cons.open[spec.Name] = c
	writeJSON(w, http.StatusCreated, spec)
}

// listConsumers handles GET /v1/subscriptions.
func (s *Server) listConsumers(w http.ResponseWriter, r *http.Request) {
	names, err := s.m.ConsumerNames()
	if err != nil {
		s.writeErr(w, err)
		return
	}
	out := make([]map[string]any, 0, len(names))
	for _, n := range names {
		spec, _, aerr := s.storedSpec(n)
		if aerr != nil {
			continue
		}
		if _, aerr := mayUse(r, spec); aerr != nil {
			continue // other tokens' consumers are not listed
		}
		item := map[string]any{"name": n, "spec": spec}
		s.cons.mu.Lock()
		if c, ok := s.cons.open[n]; ok {
			item["info"] = c.Info()
		}
		s.cons.mu.Unlock()
		out = append(out, item)
	}
	writeJSON(w, http.StatusOK, map[string]any{"subscriptions": out})
}

// deleteConsumer handles DELETE /v1/subscriptions/{name}.
func (s *Server) deleteConsumer(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	spec, status, aerr := s.storedSpec(name)
	if aerr == nil {
		status, aerr = mayUse(r, spec)
	}
	if aerr != nil {
		writeJSON(w, status, aerr)
		return
	}
	s.cons.mu.Lock()
	delete(s.cons.open, name)
	s.cons.mu.Unlock()
	if err := s.m.DeleteConsumer(name); err != nil {
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
func (s *Server) fetch(w http.ResponseWriter, r *http.Request) {
	c, status, aerr := s.consumer(r, r.PathValue("name"))
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
	ds, err := c.Fetch(ctx, max)
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
		buf = principal(r).Redact(d.Event).AppendJSON(buf)
		buf = append(buf, "}\n"...)
		if _, err := w.Write(buf); err != nil {
			return
		}
	}
}

// ack handles POST /v1/subscriptions/{name}/ack with {"seqs":[...]}.
func (s *Server) ack(w http.ResponseWriter, r *http.Request) {
	c, status, aerr := s.consumer(r, r.PathValue("name"))
	if aerr != nil {
		writeJSON(w, status, aerr)
		return
	}
	var body struct {
		Seqs []uint64 `json:"seqs"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "seqs", "want {\"seqs\":[...]}: "+err.Error())
		return
	}
	for _, seq := range body.Seqs {
		if err := c.Ack(seq); err != nil {
			s.writeErr(w, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, c.Info())
}
