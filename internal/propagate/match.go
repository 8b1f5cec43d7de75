package propagate

import (
	"errors"
	"fmt"
	"strings"

	"github.com/semprop/semprop/event"
)

// Matcher selects the events a subscription receives. Implementations must
// be safe for concurrent use and should not allocate: Match runs on the
// publish path once per event and subscription.
type Matcher interface {
	Match(ev *event.Event) bool
}

// ErrPattern is wrapped by errors from ParsePattern.
var ErrPattern = errors.New("propagate: invalid type pattern")

// TypePattern matches event types with NATS subject semantics: tokens are
// separated by '.', "*" matches exactly one token, ">" (last token only)
// matches one or more remaining tokens. The empty pattern matches everything.
type TypePattern struct {
	tokens []string
	tail   bool // ends with ">"
}

var _ Matcher = (*TypePattern)(nil)

// ParsePattern compiles a type pattern, rejecting empty tokens, ">" before
// the last token and characters not allowed in types.
func ParsePattern(p string) (*TypePattern, error) {
	if p == "" || p == ">" {
		return &TypePattern{tail: true}, nil
	}
	toks := strings.Split(p, ".")
	tp := &TypePattern{}
	for i, t := range toks {
		switch {
		case t == "":
			return nil, fmt.Errorf("%w %q: empty token at position %d", ErrPattern, p, i+1)
		case t == ">":
			if i != len(toks)-1 {
				return nil, fmt.Errorf("%w %q: \">\" must be the last token", ErrPattern, p)
			}
			tp.tail = true
			continue
		case t == "*":
		case !event.ValidType(t):
			return nil, fmt.Errorf("%w %q: token %q: use lower-case letters, digits, '_', '-', or '*' / '>'", ErrPattern, p, t)
		}
		tp.tokens = append(tp.tokens, t)
	}
	return tp, nil
}

// Match reports whether ev's type matches the pattern.
func (tp *TypePattern) Match(ev *event.Event) bool { return tp.MatchType(ev.Type) }

// MatchType reports whether typ matches the pattern.
func (tp *TypePattern) MatchType(typ string) bool {
	for _, tok := range tp.tokens {
		if typ == "" {
			return false
		}
		var head string
		if i := strings.IndexByte(typ, '.'); i >= 0 {
			head, typ = typ[:i], typ[i+1:]
			if typ == "" {
				return false
			}
		} else {
			head, typ = typ, ""
		}
		if tok != "*" && tok != head {
			return false
		}
	}
	if tp.tail {
		return typ != "" || len(tp.tokens) == 0
	}
	return typ == ""
}

// MatchAll matches every event.
var MatchAll Matcher = matchAll{}

type matchAll struct{}

func (matchAll) Match(*event.Event) bool { return true }
