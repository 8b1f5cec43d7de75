package replica

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/auth"
	"github.com/semprop/semprop/internal/filter/glob"
)

// Consistency is the guarantee a state read asks for.
type Consistency uint8

// The consistency models of GET /v1/state.
const (
	Eventual Consistency = iota // the replica as it is
	Causal                      // complete deltas only
	Session                     // read-your-writes and monotonic reads by token
	Strong                      // linearizable, through the cluster
)

var consistencyNames = [...]string{"eventual", "causal", "session", "strong"}

// String returns the model's name.
func (c Consistency) String() string { return consistencyNames[c] }

// ParseConsistency parses a model's name; "" is Eventual.
func ParseConsistency(s string) (Consistency, error) {
	if s == "" {
		return Eventual, nil
	}
	for i, n := range consistencyNames {
		if n == s {
			return Consistency(i), nil
		}
	}
	return 0, ErrConsistency
}

// SessionHeader carries a session token (a version vector) both ways.
const SessionHeader = "Semprop-Session"

// Register installs the replica's routes on srv:
//
//	POST /v1/sync/exchange  anti-entropy between peers (sync scope, or admin)
//	GET  /v1/sync/pages     a page of a full-state transfer (sync scope, or admin)
//	GET  /v1/sync           this replica's name, summary, counts and peers (admin)
//	GET  /v1/state          the catalog (subscribe; filtered by the caller's paths)
func (r *Replica) Register(srv *api.Server) {
	srv.HandleAccess("POST "+syncPath, api.AccessSync, http.HandlerFunc(r.serveExchange))
	srv.HandleAccess("GET "+pagesPath, api.AccessSync, http.HandlerFunc(r.servePages))
	srv.HandleAccess("GET /v1/sync", api.AccessAdmin, http.HandlerFunc(r.serveStatus))
	srv.HandleAccess("GET /v1/state", api.AccessSubscribe, http.HandlerFunc(r.serveState))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, field string, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error(), "field": field})
}

// maxExchangeBody bounds an exchange request (compressed).
const maxExchangeBody = 256 << 20

func (r *Replica) serveExchange(w http.ResponseWriter, req *http.Request) {
	b, err := io.ReadAll(io.LimitReader(req.Body, maxExchangeBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "body", ErrBadDelta)
		return
	}
	m, err := open(b)
	if err != nil || m.From == "" {
		writeError(w, http.StatusBadRequest, "body", ErrBadDelta)
		return
	}
	if m.From == r.cfg.Name {
		writeError(w, http.StatusBadRequest, "from", errors.New("replica: a peer has this instance's own name (sync.name must differ between instances)"))
		return
	}
	r.met.exchangesServed.Add(1)
	if m.Chunked { // a page of a pushed full state
		key := "push:" + m.From
		r.mu.RLock()
		var prev []Change
		s, ok := r.staged[key]
		if ok {
			prev = s.changes
		}
		r.mu.RUnlock()
		if !m.First && !ok {
			// A page whose predecessors are gone (expired): merging the
			// rest with the sender's summary would claim what is missing.
			writeError(w, http.StatusConflict, "body", errors.New("replica: chunked transfer lost its earlier pages; start again"))
			return
		}
		if m.First {
			prev = nil
		}
		if m.More {
			r.stage(key, append(prev, m.Changes...), m.Summary)
			w.Header().Set("Content-Type", contentType)
			_, _ = w.Write((&message{From: r.cfg.Name}).seal())
			return
		}
		r.mu.Lock()
		delete(r.staged, key)
		r.mu.Unlock()
		r.merge(Delta{Changes: append(prev, m.Changes...), Summary: m.Summary}, nil)
	} else if !m.Hello {
		r.merge(Delta{Changes: m.Changes, Summary: m.Summary}, m.Since)
	}
	if m.URL != "" {
		r.learn([]string{m.URL})
	}
	r.learn(m.Peers)
	r.peersMu.Lock()
	for _, p := range r.peers {
		if p.name == m.From || p.url == m.URL {
			p.acked = p.acked.Merge(m.Summary)
		}
	}
	r.peersMu.Unlock()
	ans := message{From: r.cfg.Name, URL: r.cfg.Advertise}
	if len(m.Peers) > 0 { // lists are traded both ways
		ans.Peers = r.peerURLs()
	}
	r.mu.RLock()
	if r.state.CountDelta(m.Summary) > r.cfg.FullAfter {
		ans.Chunked = true
	} else {
		d := r.state.Delta(m.Summary)
		ans.Summary, ans.Changes, ans.Since = d.Summary, d.Changes, m.Summary
	}
	r.mu.RUnlock()
	if m.Hello && !ans.Chunked {
		r.peersMu.Lock()
		for _, p := range r.peers {
			if p.name == m.From || p.url == m.URL {
				p.sent = p.sent.Merge(ans.Summary).Merge(m.Summary)
			}
		}
		r.peersMu.Unlock()
	}
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write(ans.seal())
}

func (r *Replica) servePages(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 || limit > 1_000_000 {
		limit = r.cfg.ChunkSize
	}
	var after *Key
	if q.Has("tree") {
		after = &Key{q.Get("tree"), q.Get("path")}
	}
	r.mu.RLock()
	page, more := r.state.Range(after, limit)
	m := message{From: r.cfg.Name, Summary: r.state.Summary(), Changes: page, More: more}
	r.mu.RUnlock()
	r.met.chunksSent.Add(1)
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write(m.seal())
}

// PeerStatus is what GET /v1/sync tells of a peer.
type PeerStatus struct {
	URL       string        `json:"url"`
	Name      string        `json:"name,omitempty"`
	Static    bool          `json:"static"`
	Acked     VersionVector `json:"acked,omitempty"`
	Fails     int           `json:"fails"`
	LastOK    *time.Time    `json:"last_ok,omitempty"`
	LastError string        `json:"last_error,omitempty"`
}

// Status is the replica's state at a glance.
type Status struct {
	Name       string        `json:"name"`
	Summary    VersionVector `json:"summary"`
	Applied    uint64        `json:"applied_seq"`
	Entries    int           `json:"entries"`
	Tombstones int           `json:"tombstones"`
	Conflicts  int           `json:"conflicts"`
	Peers      []PeerStatus  `json:"peers"`
}

// Status returns the replica's status.
func (r *Replica) Status() Status {
	r.mu.RLock()
	st := Status{Name: r.cfg.Name, Summary: r.state.Summary(), Applied: r.applied, Entries: r.state.Len() - r.state.Tombstones(), Tombstones: r.state.Tombstones(), Conflicts: r.state.conflicts()}
	r.mu.RUnlock()
	r.peersMu.Lock()
	for _, p := range r.peers {
		ps := PeerStatus{URL: p.url, Name: p.name, Static: p.static, Acked: p.acked.Clone(), Fails: p.fails, LastError: p.lastErr}
		if !p.lastOK.IsZero() {
			t := p.lastOK
			ps.LastOK = &t
		}
		st.Peers = append(st.Peers, ps)
	}
	r.peersMu.Unlock()
	slices.SortFunc(st.Peers, func(a, b PeerStatus) int { return strings.Compare(a.URL, b.URL) })
	return st
}

func (r *Replica) serveStatus(w http.ResponseWriter, req *http.Request) {
	writeJSON(w, http.StatusOK, r.Status())
}

// Entry is one key of the catalog as GET /v1/state shows it: its
// versions (more than one while concurrent changes are unresolved) and
// whether they conflict.
type Entry struct {
	Tree     string         `json:"tree"`
	Path     string         `json:"path"`
	Conflict bool           `json:"conflict"`
	Deleted  bool           `json:"deleted"`
	Versions []EntryVersion `json:"versions"`
}

// EntryVersion is one version of an Entry.
type EntryVersion struct {
	File
	HLC     string        `json:"hlc,omitempty"`
	Origin  string        `json:"origin"`
	Counter uint64        `json:"counter"`
	VV      VersionVector `json:"vv"`
}

// StateResponse is the body of GET /v1/state.
type StateResponse struct {
	Consistency string        `json:"consistency"`
	Summary     VersionVector `json:"summary"`
	Session     string        `json:"session"` // the token to send back
	Entries     []Entry       `json:"entries"`
}

// Query selects entries of the catalog.
type Query struct {
	Tree        string // "" for every tree
	Path        *glob.Pattern
	Consistency Consistency
	Token       VersionVector // session: what the client has seen
	Deleted     bool          // include sole tombstones
	Conflicts   bool          // only entries in conflict
	Limit       int
	// Visible filters by the key's subject (absolute path); nil shows all.
	Visible func(subject string, deleted bool) bool
}

// Read returns the entries q selects under q's consistency model, sorted
// by key, and the summary of the state read.
func (r *Replica) Read(ctx context.Context, q Query) ([]Entry, VersionVector, error) {
	if q.Consistency > Strong {
		return nil, nil, ErrConsistency
	}
	r.met.reads[q.Consistency].Add(1)
	switch q.Consistency {
	case Strong:
		if r.opts.LinearizableRead == nil {
			return nil, nil, ErrNotCluster
		}
		if err := r.opts.LinearizableRead(ctx); err != nil {
			return nil, nil, err
		}
		if r.opts.LastSeq != nil {
			target := r.opts.LastSeq()
			if err := r.waitFor(ctx, func() bool { return r.applied >= target }, r.cfg.SessionWait); err != nil {
				return nil, nil, err
			}
		}
	case Session:
		if err := r.waitFor(ctx, func() bool { return r.state.summary.Covers(q.Token) }, r.cfg.SessionWait); err != nil {
			return nil, nil, err
		}
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	src := r.state
	if q.Consistency == Eventual && (len(r.staged) > 0 || len(r.pending) > 0) {
		// Transfers in progress and deltas waiting for their base are
		// visible to eventual reads.
		src = NewState()
		for k, vs := range r.state.keys {
			if q.Tree == "" || k.Tree == q.Tree {
				src.keys[k] = vs
			}
		}
		var parts [][]Change
		for _, s := range r.staged {
			parts = append(parts, s.changes)
		}
		for _, p := range r.pending {
			parts = append(parts, p.d.Changes)
		}
		for _, cs := range parts {
			for _, c := range cs {
				if q.Tree == "" || c.Key.Tree == q.Tree {
					src.Apply(c)
				}
			}
		}
	}
	var out []Entry
	for k, vs := range src.keys {
		if (q.Tree != "" && k.Tree != q.Tree) || (q.Path != nil && !q.Path.Match(k.Path)) {
			continue
		}
		del := soleTombstone(vs) || (len(vs) > 0 && allDeleted(vs))
		conflict := Conflict(vs)
		if (del && !q.Deleted && !conflict) || (q.Conflicts && !conflict) {
			continue
		}
		if q.Visible != nil && !q.Visible(r.subject(k), del) {
			continue
		}
		e := Entry{Tree: k.Tree, Path: k.Path, Conflict: conflict, Deleted: del}
		for _, v := range vs {
			ev := EntryVersion{File: v.File, Origin: v.Origin, Counter: v.Counter, VV: v.VV.Clone()}
			if !v.HLC.IsZero() {
				ev.HLC = v.HLC.String()
			}
			e.Versions = append(e.Versions, ev)
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return Key{a.Tree, a.Path}.compare(Key{b.Tree, b.Path}) })
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, r.state.Summary(), nil
}

func allDeleted(vs []Version) bool {
	for _, v := range vs {
		if !v.Deleted {
			return false
		}
	}
	return true
}

// subject is the path a caller's scopes are checked against.
func (r *Replica) subject(k Key) string {
	if r.opts.Abs != nil {
		if p, ok := r.opts.Abs(k.Tree, k.Path); ok {
			return p
		}
	}
	return k.Tree + "/" + k.Path
}

// waitFor waits until cond (called with mu read-held) holds, for at most
// limit, running anti-entropy rounds meanwhile.
func (r *Replica) waitFor(ctx context.Context, cond func() bool, limit time.Duration) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		ch := make(chan struct{})
		r.mu.Lock()
		ok := cond()
		if !ok {
			r.waiters[ch] = struct{}{}
		}
		r.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case r.kick <- struct{}{}:
		default:
		}
		poll := time.NewTimer(50 * time.Millisecond) // LastSeq moves without notice
		select {
		case <-ch:
		case <-poll.C:
		case <-ctx.Done():
			poll.Stop()
			r.dropWaiter(ch)
			return ctx.Err()
		case <-deadline.C:
			poll.Stop()
			r.dropWaiter(ch)
			return ErrSessionLag
		}
		poll.Stop()
		r.dropWaiter(ch)
	}
}

func (r *Replica) dropWaiter(ch chan struct{}) {
	r.mu.Lock()
	delete(r.waiters, ch)
	r.mu.Unlock()
}

// serveState serves GET /v1/state?tree=&path=GLOB&consistency=&session=
// &deleted=true&conflicts=true&limit=N.
func (r *Replica) serveState(w http.ResponseWriter, req *http.Request) {
	qs := req.URL.Query()
	var q Query
	var err error
	if q.Consistency, err = ParseConsistency(qs.Get("consistency")); err != nil {
		writeError(w, http.StatusBadRequest, "consistency", err)
		return
	}
	if g := qs.Get("path"); g != "" {
		if q.Path, err = glob.Compile(g); err != nil {
			writeError(w, http.StatusBadRequest, "path", err)
			return
		}
	}
	q.Tree = qs.Get("tree")
	tok := qs.Get("session")
	if tok == "" {
		tok = req.Header.Get(SessionHeader)
	}
	if q.Token, err = ParseVersionVector(tok); err != nil {
		writeError(w, http.StatusBadRequest, "session", err)
		return
	}
	q.Deleted = qs.Get("deleted") == "true"
	q.Conflicts = qs.Get("conflicts") == "true"
	if l := qs.Get("limit"); l != "" {
		if q.Limit, err = strconv.Atoi(l); err != nil || q.Limit < 0 {
			writeError(w, http.StatusBadRequest, "limit", errors.New("replica: limit must be a non-negative integer"))
			return
		}
	}
	p := api.Caller(req)
	q.Visible = visibleTo(p)
	entries, summary, err := r.Read(req.Context(), q)
	switch {
	case errors.Is(err, ErrNotCluster):
		writeError(w, http.StatusBadRequest, "consistency", err)
		return
	case errors.Is(err, ErrSessionLag):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "session", err)
		return
	case err != nil:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "consistency", err)
		return
	}
	redact(p, entries, r)
	session := summary.Clone().Merge(q.Token)
	if session == nil {
		session = VersionVector{}
	}
	w.Header().Set(SessionHeader, session.String())
	if entries == nil {
		entries = []Entry{}
	}
	writeJSON(w, http.StatusOK, StateResponse{Consistency: q.Consistency.String(), Summary: summary, Session: session.String(), Entries: entries})
}

// visibleTo checks a key's subject against p as an fs event on it.
func visibleTo(p *auth.Principal) func(string, bool) bool {
	return func(subject string, deleted bool) bool {
		ev := event.Event{Type: event.TypeWrite, Subject: subject}
		if deleted {
			ev.Type = event.TypeDelete
		}
		return p.Match(&ev)
	}
}

// redact hides what p may not see of each version: its uid and hash when
// p's redaction removes them, the path when it rewrites the subject.
func redact(p *auth.Principal, entries []Entry, r *Replica) {
	for i := range entries {
		e := &entries[i]
		subject := r.subject(Key{e.Tree, e.Path})
		for j := range e.Versions {
			v := &e.Versions[j]
			ev := &event.Event{Type: event.TypeWrite, Subject: subject}
			ev.Context.SetUID(v.UID)
			if v.Hash != "" {
				ev.SetAttr("hash", v.Hash)
			}
			red := p.Redact(ev)
			if red == ev {
				continue
			}
			if !red.Context.Has(event.HasUID) || red.Context.UID != v.UID {
				v.UID = 0
			}
			if h, _ := red.Attr("hash"); h != v.Hash {
				v.Hash = h
			}
			if red.Subject != subject {
				e.Path = red.Subject
			}
		}
	}
}
