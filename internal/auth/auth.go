// Package auth decides who may do what over the HTTP API: bearer tokens
// from the configuration, each with scopes (publish:PATTERN,
// subscribe:PATTERN, admin), optional path globs that bound what the token
// may publish and see, a deny list and redaction, a request rate limit and
// a cap on concurrent streams.
//
// With no tokens configured every request is allowed (the daemon then only
// listens on loopback unless told --insecure). A Principal is immutable
// apart from its counters and safe for concurrent use.
package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
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
	// semantics) and "admin" (routes, cluster, metrics, every consumer).
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
}

// Principal is an authenticated caller.
type Principal struct {
	Name       string
	admin      bool
	all        bool // no tokens configured: everything is allowed
	publish    []*route.Pattern
	subscribe  []*route.Pattern
	paths      []*glob.Pattern
	deny       filter.Filter
	redact     *filter.Redactor
	limiter    *rate.Limiter
	maxStreams int32
	streams    atomic.Int32
}

// Anonymous is the principal of every request when no tokens are
// configured: it may do everything.
var Anonymous = &Principal{Name: "anonymous", admin: true, all: true, maxStreams: 1 << 20}

// Admin reports whether p has the admin scope.
func (p *Principal) Admin() bool { return p.admin }

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
// ErrForbidden naming the field at fault ("type" or "subject").
func (p *Principal) CheckPublish(ev *event.Event) (field string, err error) {
	if p.all {
		return "", nil
	}
	if !p.admin && !anyMatch(p.publish, ev.Type) {
		return "type", fmt.Errorf("%w: token %s may not publish %q", ErrForbidden, p.Name, ev.Type)
	}
	if !p.pathOK(ev.Subject) {
		return "subject", fmt.Errorf("%w: token %s may not publish under %q", ErrForbidden, p.Name, ev.Subject)
	}
	return "", nil
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

// Redact returns what p may see of ev: ev itself or a redacted copy.
func (p *Principal) Redact(ev *event.Event) *event.Event {
	if p.redact == nil {
		return ev
	}
	return p.redact.Apply(ev)
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
}

// New validates specs and returns their Authenticator. Errors wrap
// ErrConfig and name the token.
func New(specs []TokenSpec) (*Authenticator, error) {
	a := &Authenticator{byHash: make(map[[sha256.Size]byte]*Principal)}
	for i, s := range specs {
		name := s.Name
		if name == "" {
			name = fmt.Sprintf("#%d", i+1)
		}
		p, sum, err := compile(s)
		if err != nil {
			return nil, fmt.Errorf("%w: token %s: %w", ErrConfig, name, err)
		}
		p.Name = name
		if _, dup := a.byHash[sum]; dup {
			return nil, fmt.Errorf("%w: token %s: same secret as another token", ErrConfig, name)
		}
		a.byHash[sum] = p
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
	p := &Principal{maxStreams: 64}
	if s.MaxStreams > 0 {
		p.maxStreams = int32(s.MaxStreams)
	}
	if len(s.Scopes) == 0 {
		return nil, sum, errors.New("no scopes")
	}
	for _, sc := range s.Scopes {
		kind, pat, _ := strings.Cut(sc, ":")
		switch kind {
		case "admin":
			p.admin = true
			continue
		case "publish", "subscribe":
		default:
			return nil, sum, fmt.Errorf("scope %q: want publish:PATTERN, subscribe:PATTERN or admin", sc)
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

// Authenticate returns the principal of r's bearer token (Authorization:
// Bearer T, or ?token=T for browsers' EventSource and WebSocket, which
// cannot set headers). Without configured tokens it returns Anonymous.
func (a *Authenticator) Authenticate(r *http.Request) (*Principal, error) {
	if !a.Enabled() {
		return Anonymous, nil
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
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

// Lookup returns the principal named name (Anonymous when no tokens are
// configured), for work done on a principal's behalf later, such as a
// durable consumer it created.
func (a *Authenticator) Lookup(name string) (*Principal, bool) {
	if !a.Enabled() {
		return Anonymous, true
	}
	for _, p := range a.byHash {
		if p.Name == name {
			return p, true
		}
	}
	return nil, false
}
