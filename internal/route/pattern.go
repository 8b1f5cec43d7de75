package route

import (
	"fmt"
	"strings"

	"github.com/semprop/semprop/event"
)

// Pattern is a compiled event-type pattern with NATS semantics: dotted
// tokens, "*" matches exactly one token, ">" (last token only) matches one
// or more remaining tokens. ">" alone matches every type. A Pattern is
// immutable and safe for concurrent use; Match does not allocate.
type Pattern struct {
	src    string
	toks   []string
	gt     bool   // ends with ">"
	wild   bool   // has "*" or ">"
	prefix string // for "a.b.>" with no "*": "a.b."
}

// ParsePattern validates and compiles a type pattern. Tokens are type
// tokens (event.ValidType: printable characters other than ".", "*", ">"
// and white space, case-sensitive), or "*", or a final ">". The error says which token is
// wrong and why.
func ParsePattern(s string) (*Pattern, error) {
	if s == "" {
		return nil, fmt.Errorf("type pattern %q: %w", s, ErrEmptyPattern)
	}
	p := &Pattern{src: s, toks: strings.Split(s, ".")}
	for i, t := range p.toks {
		switch {
		case t == "":
			return nil, fmt.Errorf("type pattern %q: token %d is empty: %w", s, i+1, ErrBadPattern)
		case t == ">":
			if i != len(p.toks)-1 {
				return nil, fmt.Errorf("type pattern %q: \">\" must be the last token, found at token %d: %w", s, i+1, ErrBadPattern)
			}
			p.gt, p.wild = true, true
		case t == "*":
			p.wild = true
		default:
			if !event.ValidType(t) {
				return nil, fmt.Errorf("type pattern %q: token %d %q is not a type token (printable characters other than . * > and white space), or a whole-token * or >: %w", s, i+1, t, ErrBadPattern)
			}
		}
	}
	if p.gt && !strings.Contains(s, "*") {
		p.prefix = s[:len(s)-1]
	}
	return p, nil
}

// String returns the pattern as written.
func (p *Pattern) String() string { return p.src }

// Literal reports whether the pattern has no wildcards.
func (p *Pattern) Literal() bool { return !p.wild }

// Match reports whether the event type typ matches. A type with an empty
// token ("a..b", ".a", "a.") matches only a literal pattern equal to it,
// which cannot exist, so it matches nothing.
func (p *Pattern) Match(typ string) bool {
	if !p.wild {
		return typ == p.src
	}
	if p.prefix != "" {
		// "a.b.>": the prefix, then at least one non-empty token.
		return len(typ) > len(p.prefix) && strings.HasPrefix(typ, p.prefix) && validTokens(typ[len(p.prefix):])
	}
	if p.src == ">" {
		return validTokens(typ)
	}
	rest, done := typ, false
	for _, t := range p.toks {
		if t == ">" {
			return !done && validTokens(rest)
		}
		if done {
			return false
		}
		tok := rest
		if j := strings.IndexByte(rest, '.'); j >= 0 {
			tok, rest = rest[:j], rest[j+1:]
		} else {
			done = true
		}
		if tok == "" || (t != "*" && t != tok) {
			return false
		}
	}
	return done
}

// validTokens reports whether s is one or more non-empty dotted tokens.
func validTokens(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	return !strings.Contains(s, "..")
}
