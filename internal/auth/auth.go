// Package auth decides who may do what over the HTTP API: bearer tokens
// from the configuration, each with a unique name (its identity: durable
// consumers belong to a name), scopes (publish:PATTERN, subscribe:PATTERN,
// admin, import, sync), optional path globs that bound what the token may
// publish and see, a deny list and redaction, the highest priority it may
// publish, a request rate limit and caps on concurrent streams and durable
// consumers.
//
// What the daemon itself observed is never taken from the network: events
// of the reserved types (fs.*, semprop.*) and the capture context (process
// ids and names, boundaries, the daemon's semprop:// sources, HLC, rescan)
// are refused on publish unless the token holds the import scope, meant for
// relays between instances. A token's selectors are evaluated on events as
// the token sees them, after redaction, so a hidden field cannot be probed
// by selecting on it.
//
// With no tokens configured every request is allowed, except publishing
// what only the daemon may say (the daemon then only listens on loopback
// unless told --insecure). A Principal is immutable apart from its counters
// and safe for concurrent use.
package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/filter"
	"github.com/semprop/semprop/internal/filter/glob"
	"github.com/semprop/semprop/internal/route"
)

// Errors of authentication and authorization.
var (
	ErrUnauthenticated = errors.New("auth: missing or unknown bearer token")
	ErrForbidden       = errors.New("auth: forbidden")
	ErrConfig          = errors.New("auth: invalid token configuration")
)

// TokenSpec configures one token.
type TokenSpec struct {
	Name string `yaml:"name" json:"name"`
	// Token is the secret itself, or SHA256 its hex SHA-256 digest (so the
	// configuration need not hold the secret).
	Token  string `yaml:"token" json:"-"`
	SHA256 string `yaml:"sha256" json:"-"`
	// Scopes: "publish:PATTERN", "subscribe:PATTERN" (type patterns, NATS
	// semantics), "admin" (routes, cluster, metrics, every consumer) and
	// "import" (may publish the reserved types fs.* and semprop.* and the
	// capture context: for relays between instances; it adds no type)
	// and "sync" (may exchange file-state catalogs with this instance: for
	// the tokens sync peers present).
	Scopes []string `yaml:"scopes" json:"scopes"`
	// Paths, if set, are globs the subject of every event the token
	// publishes or sees must match; events without a subject are then
	// outside.
	Paths []string `yaml:"paths" json:"paths,omitempty"`
	// Deny lists path globs whose events the token never sees (subject,
	// oldpath or symlink target), e.g. "**/.ssh/**".
	Deny []string `yaml:"deny" json:"deny,omitempty"`
	// Redact hides fields of what the token sees.
	Redact *filter.RedactSpec `yaml:"redact" json:"redact,omitempty"`
	// Rate limits requests per second (0: unlimited), with Burst.
	Rate  float64 `yaml:"rate" json:"rate,omitempty"`
	Burst int     `yaml:"burst" json:"burst,omitempty"`
	// MaxStreams caps concurrent SSE/WebSocket streams (0: 64).
	MaxStreams int `yaml:"max_streams" json:"max_streams,omitempty"`
	// MaxConsumers caps the durable consumers the token owns (0:
	// DefaultMaxConsumers).
	MaxConsumers int `yaml:"max_consumers" json:"max_consumers,omitempty"`
	// MaxPriority is the highest priority the token may publish: bulk,
	// normal (the default), high or critical.
	MaxPriority string `yaml:"max_priority" json:"max_priority,omitempty"`
}

// DefaultMaxConsumers is how many durable consumers a token may own when
// its spec does not say; AnonymousMaxConsumers how many exist in all
// without tokens (each is a file in the state directory).
const (
	DefaultMaxConsumers   = 16
	AnonymousMaxConsumers = 1024
)

// Principal is an authenticated caller.
type Principal struct {
	Name         string
	admin        bool
	all          bool // no tokens configured: everything is allowed
	imports      bool // may publish reserved types and capture context
	syncs        bool // may exchange file-state catalogs (sync peers)
	publish      []*route.Pattern
	subscribe    []*route.Pattern
	paths        []*glob.Pattern
	deny         filter.Filter
	redact       *filter.Redactor
	limiter      *rate.Limiter
	maxPriority  event.Priority
	maxStreams   int32
	maxConsumers int
	streams      atomic.Int32
}

// Anonymous is the principal of every request when no tokens are
// configured: it may do everything except publish what only the daemon may
// say (it has no import scope).
var Anonymous = &Principal{Name: "anonymous", admin: true, all: true, maxPriority: event.PriorityCritical, maxStreams: 1 << 20, maxConsumers: AnonymousMaxConsumers}

// MaxConsumers is how many durable consumers p may own.
func (p *Principal) MaxConsumers() int { return p.maxConsumers }

// Admin reports whether p has the admin scope.
func (p *Principal) Admin() bool { return p.admin }

// CanSync reports whether p may exchange file-state catalogs with this
// instance: the sync scope, or admin.
func (p *Principal) CanSync() bool { return p.admin || p.syncs }

// CanPublishAny reports whether p may publish some events.
func (p *Principal) CanPublishAny() bool { return p.all || p.admin || len(p.publish) > 0 }

// CanSubscribeAny reports whether p may see some events.
func (p *Principal) CanSubscribeAny() bool { return p.all || p.admin || len(p.subscribe) > 0 }

func (p *Principal) pathOK(subject string) bool {
	if len(p.paths) == 0 {
		return true
	}
	for _, g := range p.paths {
		if g.Match(subject) {
			return true
		}
	}
	return false
}

func anyMatch(ps []*route.Pattern, typ string) bool {
	for _, pt := range ps {
		if pt.Match(typ) {
			return true
		}
	}
	return false
}

// CheckPublish returns nil if p may publish ev, else an error wrapping
// ErrForbidden naming the field at fault ("type", "subject", "oldpath",
// "target", "priority", or a capture-context field such as "comm").
//
// Reserved types and capture context are refused unless p holds the import
// scope, whatever else p may do. A token limited to paths must name clean
// absolute paths (no "..", ".", "//" or trailing "/") in the subject, old
// path and symlink target (a relative target is resolved against the
// subject's directory), all within its paths.
func (p *Principal) CheckPublish(ev *event.Event) (field string, err error) {
	if !p.imports {
		if err := event.CheckNetworkOrigin(ev); err != nil {
			field := ""
			var fe *event.FieldError
			if errors.As(err, &fe) {
				field = fe.Field
			}
			return field, fmt.Errorf("%w: token %s: %w (only a token with the import scope may publish it)", ErrForbidden, p.Name, err)
		}
	}
	if ev.Priority > p.maxPriority {
		return "priority", fmt.Errorf("%w: token %s may publish priority up to %s, not %s", ErrForbidden, p.Name, p.maxPriority, ev.Priority)
	}
	if p.all {
		return "", nil
	}
	if !p.admin && !anyMatch(p.publish, ev.Type) {
		return "type", fmt.Errorf("%w: token %s may not publish %q", ErrForbidden, p.Name, ev.Type)
	}
	if len(p.paths) == 0 {
		return "", nil
	}
	if err := p.publishPath(ev.Subject); err != nil {
		return "subject", err
	}
	if ev.Context.OldPath != "" {
		if err := p.publishPath(ev.Context.OldPath); err != nil {
			return "oldpath", err
		}
	}
	if t := ev.Context.Target; t != "" {
		if !strings.HasPrefix(t, "/") {
			t = path.Join(path.Dir(ev.Subject), t)
		}
		if err := p.publishPath(t); err != nil {
			return "target", err
		}
	}
	return "", nil
}

// publishPath checks one path attribute of an event p publishes.
func (p *Principal) publishPath(s string) error {
	if s != "" && (!strings.HasPrefix(s, "/") || path.Clean(s) != s) {
		return fmt.Errorf("%w: token %s may publish only clean absolute paths, not %q", ErrForbidden, p.Name, s)
	}
	if !p.pathOK(s) {
		return fmt.Errorf("%w: token %s may not publish under %q", ErrForbidden, p.Name, s)
	}
	return nil
}

// Match reports whether p may see ev: its type matches a subscribe scope
// (or p is admin), its subject matches p's paths, and the deny list does
// not reject it. It makes a Principal a propagate.Matcher.
func (p *Principal) Match(ev *event.Event) bool {
	if p.all {
		return true
	}
	if !p.admin && !anyMatch(p.subscribe, ev.Type) {
		return false
	}
	if !p.pathOK(ev.Subject) {
		return false
	}
	return p.deny == nil || p.deny.Match(ev)
}

// Matcher is what Select combines: anything that selects events, such as
// a compiled selector.
type Matcher interface {
	Match(ev *event.Event) bool
}

// Select returns a matcher of the events p may see (Match, on the event as
// stored) that m selects when evaluated on the event as p sees it (after
// Redact). So a selector on a hidden field matches only what p is shown:
// `comm == "mkdir"` matches nothing for a token whose comm is masked, and
// a hashed path matches only by its hash.
func (p *Principal) Select(m Matcher) Matcher {
	if p.all {
		return m
	}
	return selection{p, m}
}

type selection struct {
	p *Principal
	m Matcher
}

func (s selection) Match(ev *event.Event) bool {
	return s.p.Match(ev) && s.m.Match(s.p.Redact(ev))
}

// Redact returns what p may see of ev: ev itself or a redacted copy. A
// token limited to paths never sees a path outside them: the previous
// path of a rename from outside (or a link to a file outside) and a
// symlink's target outside read as empty.
func (p *Principal) Redact(ev *event.Event) *event.Event {
	out := ev
	if p.redact != nil {
		out = p.redact.Apply(ev)
	}
	if len(p.paths) == 0 {
		return out
	}
	c := &out.Context
	oldOut := c.OldPath != "" && !p.pathOK(c.OldPath)
	targetOut := c.Target != "" && !p.pathOK(c.Target)
	if !oldOut && !targetOut {
		return out
	}
	if out == ev {
		cp := *ev
		out = &cp
	}
	if oldOut {
		out.Context.OldPath = ""
	}
	if targetOut {
		out.Context.Target = ""
	}
	return out
}

// Allow takes one request from p's rate limit; when it is exhausted it
// returns false and how long to wait.
func (p *Principal) Allow() (ok bool, retryAfterSeconds int) {
	if p.limiter == nil {
		return true, 0
	}
	r := p.limiter.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return false, int(d.Seconds()) + 1
	}
	return true, 0
}

// OpenStream counts a new stream against p's cap; it returns false when p
// has too many open. Call the returned func when the stream ends.
func (p *Principal) OpenStream() (release func(), ok bool) {
	if p.streams.Add(1) > p.maxStreams {
		p.streams.Add(-1)
		return nil, false
	}
	return func() { p.streams.Add(-1) }, true
}

// Authenticator maps bearer tokens to principals.
type Authenticator struct {
	byHash map[[sha256.Size]byte]*Principal
	byName map[string]*Principal
}

// New validates specs and returns their Authenticator. Errors wrap
// ErrConfig and name the token.
func New(specs []TokenSpec) (*Authenticator, error) {
	a := &Authenticator{byHash: make(map[[sha256.Size]byte]*Principal), byName: make(map[string]*Principal)}
	at := make(map[string]int) // name -> position, for messages
	for i, s := range specs {
		// The name is the token's identity (consumers belong to it), so it
		// must be there and be unique: never derived from the position.
		name := s.Name
		if strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("%w: token #%d: name is required (it is the token's identity: durable consumers belong to it)", ErrConfig, i+1)
		}
		if j, dup := at[name]; dup {
			return nil, fmt.Errorf("%w: token #%d: name %q is also the name of token #%d: names must be unique", ErrConfig, i+1, name, j+1)
		}
		at[name] = i
		p, sum, err := compile(s)
		if err != nil {
			return nil, fmt.Errorf("%w: token %s: %w", ErrConfig, name, err)
		}
		p.Name = name
		if _, dup := a.byHash[sum]; dup {
			return nil, fmt.Errorf("%w: token %s: same secret as another token", ErrConfig, name)
		}
		a.byHash[sum] = p
		a.byName[name] = p
	}
	return a, nil
}

func compile(s TokenSpec) (*Principal, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	switch {
	case s.Token != "" && s.SHA256 != "":
		return nil, sum, errors.New("set token or sha256, not both")
	case s.Token != "":
		if len(s.Token) < 16 {
			return nil, sum, errors.New("token must be at least 16 characters")
		}
		sum = sha256.Sum256([]byte(s.Token))
	case s.SHA256 != "":
		b, err := hex.DecodeString(s.SHA256)
		if err != nil || len(b) != sha256.Size {
			return nil, sum, errors.New("sha256 must be 64 hex digits")
		}
		copy(sum[:], b)
	default:
		return nil, sum, errors.New("token or sha256 is required")
	}
	p := &Principal{maxStreams: 64, maxConsumers: DefaultMaxConsumers}
	if s.MaxStreams > 0 {
		p.maxStreams = int32(s.MaxStreams)
	}
	switch {
	case s.MaxConsumers < 0:
		return nil, sum, errors.New("max_consumers must not be negative")
	case s.MaxConsumers > 0:
		p.maxConsumers = s.MaxConsumers
	}
	prio, ok := event.ParsePriority(s.MaxPriority)
	if !ok {
		return nil, sum, fmt.Errorf("max_priority %q: want bulk, normal, high or critical", s.MaxPriority)
	}
	p.maxPriority = prio
	if len(s.Scopes) == 0 {
		return nil, sum, errors.New("no scopes")
	}
	for _, sc := range s.Scopes {
		kind, pat, _ := strings.Cut(sc, ":")
		switch kind {
		case "admin", "import", "sync":
			if pat != "" || strings.Contains(sc, ":") {
				return nil, sum, fmt.Errorf("scope %q: %s takes no pattern", sc, kind)
			}
			p.admin = p.admin || kind == "admin"
			p.imports = p.imports || kind == "import"
			p.syncs = p.syncs || kind == "sync"
			continue
		case "publish", "subscribe":
		default:
			return nil, sum, fmt.Errorf("scope %q: want publish:PATTERN, subscribe:PATTERN, admin, import or sync", sc)
		}
		pt, err := route.ParsePattern(pat)
		if err != nil {
			return nil, sum, fmt.Errorf("scope %q: %w", sc, err)
		}
		if kind == "publish" {
			p.publish = append(p.publish, pt)
		} else {
			p.subscribe = append(p.subscribe, pt)
		}
	}
	for _, g := range s.Paths {
		pg, err := glob.Compile(g)
		if err != nil {
			return nil, sum, fmt.Errorf("paths: %w", err)
		}
		p.paths = append(p.paths, pg)
	}
	if len(s.Deny) > 0 {
		d, err := filter.Deny(s.Deny...)
		if err != nil {
			return nil, sum, err
		}
		p.deny = d
	}
	if s.Redact != nil {
		r, err := filter.NewRedactor(*s.Redact)
		if err != nil {
			return nil, sum, err
		}
		p.redact = r
	}
	if s.Rate < 0 {
		return nil, sum, errors.New("rate must not be negative")
	}
	if s.Rate > 0 {
		burst := s.Burst
		if burst <= 0 {
			burst = max(1, int(s.Rate))
		}
		p.limiter = rate.NewLimiter(rate.Limit(s.Rate), burst)
	}
	return p, sum, nil
}

// Enabled reports whether any token is configured.
func (a *Authenticator) Enabled() bool { return a != nil && len(a.byHash) > 0 }

// QueryTokenRoutes are the only requests that may carry their token as
// ?token=T: the browser streams (events and the analytics live feed), since EventSource and WebSocket cannot set
// headers. Everywhere else a token in the URL (which ends up in logs and
// histories) is ignored.
var QueryTokenRoutes = map[string]bool{"GET /v1/stream": true, "GET /v1/ws": true, "GET /v1/analytics/live": true}

// Authenticate returns the principal of r's bearer token (Authorization:
// Bearer T, the scheme in any case, or ?token=T on QueryTokenRoutes).
// Without configured tokens it returns Anonymous.
func (a *Authenticator) Authenticate(r *http.Request) (*Principal, error) {
	if !a.Enabled() {
		return Anonymous, nil
	}
	var tok string
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return nil, ErrUnauthenticated
		}
		tok = strings.TrimSpace(rest)
	} else if QueryTokenRoutes[r.Method+" "+r.URL.Path] {
		tok = r.URL.Query().Get("token")
	}
	if tok == "" {
		return nil, ErrUnauthenticated
	}
	// Looked up by the SHA-256 of the secret: the lookup's timing says
	// nothing useful about the secret itself.
	p, ok := a.byHash[sha256.Sum256([]byte(tok))]
	if !ok {
		return nil, ErrUnauthenticated
	}
	return p, nil
}

// Principals returns the configured tokens' principals, in no order; none
// without tokens.
func (a *Authenticator) Principals() []*Principal {
	if !a.Enabled() {
		return nil
	}
	ps := make([]*Principal, 0, len(a.byName))
	for _, p := range a.byName {
		ps = append(ps, p)
	}
	return ps
}

// Lookup returns the principal named name (Anonymous when no tokens are
// configured), for work done on a principal's behalf later, such as a
// durable consumer it created.
func (a *Authenticator) Lookup(name string) (*Principal, bool) {
	if !a.Enabled() {
		return Anonymous, true
	}
	p, ok := a.byName[name]
	return p, ok
}
