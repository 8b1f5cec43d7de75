package monitor

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// MatchType is how a Matcher compares a label's value.
type MatchType uint8

// The match types, as written in selectors and matchers.
const (
	MatchEqual     MatchType = iota // =
	MatchNotEqual                   // !=
	MatchRegexp                     // =~ (anchored)
	MatchNotRegexp                  // !~ (anchored)
)

var matchOps = [...]string{"=", "!=", "=~", "!~"}

func (t MatchType) String() string { return matchOps[t] }

// Matcher tests one label of a label set: a missing label has the value
// "". Build it with NewMatcher or ParseMatchers; a Matcher is immutable
// and safe for concurrent use.
type Matcher struct {
	Name  string    `json:"name"`
	Type  MatchType `json:"-"`
	Value string    `json:"value"`
	re    *regexp.Regexp
}

// NewMatcher returns a matcher, compiling the value of a regexp match.
func NewMatcher(t MatchType, name, value string) (Matcher, error) {
	m := Matcher{Name: name, Type: t, Value: value}
	if t == MatchRegexp || t == MatchNotRegexp {
		re, err := regexp.Compile("^(?:" + value + ")$")
		if err != nil {
			return m, fmt.Errorf("%w: %s%s%q: %w", ErrMatcher, name, t, value, err)
		}
		m.re = re
	}
	return m, nil
}

// Matches reports whether the label set satisfies the matcher.
func (m Matcher) Matches(l Labels) bool {
	v := l[m.Name]
	switch m.Type {
	case MatchEqual:
		return v == m.Value
	case MatchNotEqual:
		return v != m.Value
	case MatchRegexp:
		return m.re.MatchString(v)
	default:
		return !m.re.MatchString(v)
	}
}

// String renders the matcher as name="value" with its operator.
func (m Matcher) String() string { return m.Name + m.Type.String() + strconv.Quote(m.Value) }

func matchAll(ms []Matcher, l Labels) bool {
	for _, m := range ms {
		if !m.Matches(l) {
			return false
		}
	}
	return true
}

// ParseMatchers parses a comma-separated list of matchers, optionally in
// braces: `alertname="DiskFull", severity=~"warn|crit"`. Values may be
// quoted (Go string syntax) or bare words.
func ParseMatchers(s string) ([]Matcher, error) {
	p := &parser{lx: lexer{src: strings.TrimSpace(s)}}
	p.next()
	braced := p.tok.kind == tLBrace
	if braced {
		p.next()
	}
	var out []Matcher
	for p.tok.kind != tEOF && p.tok.kind != tRBrace {
		m, err := p.matcher()
		if err != nil {
			return nil, err
		}
		out = append(out, m)
		if p.tok.kind != tComma {
			break
		}
		p.next()
	}
	if braced {
		if p.tok.kind != tRBrace {
			return nil, p.errorf("want }")
		}
		p.next()
	}
	if p.tok.kind != tEOF {
		return nil, p.errorf("unexpected %q", p.tok.text)
	}
	if p.err != nil {
		return nil, p.err
	}
	return out, nil
}
