package monitor

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The expression language (see docs/monitoring.md) is a small subset of
// PromQL: instant selectors with label matchers, range selectors,
// arithmetic, comparisons that filter, and/or/unless, aggregations with
// by, and the functions in funcs. Expressions are parsed once, when the
// rules load, into an Expr tree.

// Expr is a parsed alert expression. It is immutable and safe for
// concurrent use.
type Expr struct {
	src  string
	root node
}

// String returns the source text.
func (e *Expr) String() string { return e.src }

// Metrics returns the metric names the expression selects (for a
// histogram quantile, the _bucket series).
func (e *Expr) Metrics() []string {
	var out []string
	walk(e.root, func(n node) {
		if s, ok := n.(*selector); ok && !slices.Contains(out, s.name) {
			out = append(out, s.name)
		}
	})
	slices.Sort(out)
	return out
}

type node interface{}

type (
	numberLit struct{ v float64 }
	selector  struct {
		name     string
		matchers []Matcher
		rng      time.Duration // > 0: a range selector
	}
	analyticsSel struct {
		metric, by string
		step, rng  time.Duration
	}
	binary struct {
		op   string
		l, r node
	}
	unaryNeg  struct{ x node }
	aggregate struct {
		op string
		by []string
		x  node
	}
	call struct {
		fn   string
		args []node
	}
)

func walk(n node, f func(node)) {
	f(n)
	switch n := n.(type) {
	case *binary:
		walk(n.l, f)
		walk(n.r, f)
	case *unaryNeg:
		walk(n.x, f)
	case *aggregate:
		walk(n.x, f)
	case *call:
		for _, a := range n.args {
			walk(a, f)
		}
	}
}

// ParseExpr parses an alert expression.
func ParseExpr(src string) (*Expr, error) {
	if len(src) > 4096 {
		return nil, fmt.Errorf("%w: longer than 4096 bytes", ErrExpr)
	}
	p := &parser{lx: lexer{src: src}}
	p.next()
	n := p.expr(0)
	if p.err == nil && p.tok.kind != tEOF {
		p.errorf("unexpected %q", p.tok.text)
	}
	if p.err != nil {
		return nil, p.err
	}
	if err := check(n, 0); err != nil {
		return nil, err
	}
	if kindOf(n) == kRange {
		return nil, fmt.Errorf("%w: a range [..] needs a function such as rate() around it", ErrExpr)
	}
	return &Expr{src: src, root: n}, nil
}

// MustParseExpr is ParseExpr for expressions known to be valid; it panics
// on an error.
func MustParseExpr(src string) *Expr {
	e, err := ParseExpr(src)
	if err != nil {
		panic(err)
	}
	return e
}

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tNumber
	tDuration
	tString
	tOp
	tLParen
	tRParen
	tLBrace
	tRBrace
	tLBrack
	tRBrack
	tComma
	tBad
)

type token struct {
	kind tokKind
	text string
	pos  int
}

type lexer struct {
	src string
	pos int
}

func (lx *lexer) next() token {
	for lx.pos < len(lx.src) && (lx.src[lx.pos] == ' ' || lx.src[lx.pos] == '\t' || lx.src[lx.pos] == '\n' || lx.src[lx.pos] == '\r') {
		lx.pos++
	}
	start := lx.pos
	if lx.pos >= len(lx.src) {
		return token{kind: tEOF, pos: start}
	}
	c := lx.src[lx.pos]
	one := func(k tokKind) token { lx.pos++; return token{kind: k, text: lx.src[start:lx.pos], pos: start} }
	switch {
	case c == '(':
		return one(tLParen)
	case c == ')':
		return one(tRParen)
	case c == '{':
		return one(tLBrace)
	case c == '}':
		return one(tRBrace)
	case c == '[':
		return one(tLBrack)
	case c == ']':
		return one(tRBrack)
	case c == ',':
		return one(tComma)
	case c == '"' || c == '`' || c == '\'':
		return lx.str(c)
	case c >= '0' && c <= '9' || c == '.':
		return lx.number()
	case c == '_' || c == ':' || c < utf8.RuneSelf && unicode.IsLetter(rune(c)):
		for lx.pos < len(lx.src) {
			d := lx.src[lx.pos]
			if d == '_' || d == ':' || d >= '0' && d <= '9' || d < utf8.RuneSelf && unicode.IsLetter(rune(d)) {
				lx.pos++
				continue
			}
			break
		}
		return token{kind: tIdent, text: lx.src[start:lx.pos], pos: start}
	}
	for _, op := range []string{">=", "<=", "==", "!=", "=~", "!~", ">", "<", "=", "+", "-", "*", "/"} {
		if strings.HasPrefix(lx.src[lx.pos:], op) {
			lx.pos += len(op)
			return token{kind: tOp, text: op, pos: start}
		}
	}
	lx.pos++
	return token{kind: tBad, text: lx.src[start:lx.pos], pos: start}
}

func (lx *lexer) str(q byte) token {
	start := lx.pos
	lx.pos++
	for lx.pos < len(lx.src) {
		c := lx.src[lx.pos]
		if c == '\\' && q != '`' {
			lx.pos += 2
			continue
		}
		lx.pos++
		if c == q {
			raw := lx.src[start:lx.pos]
			if q == '\'' {
				raw = `"` + strings.ReplaceAll(raw[1:len(raw)-1], `"`, `\"`) + `"`
			}
			s, err := strconv.Unquote(raw)
			if err != nil || !utf8.ValidString(s) {
				return token{kind: tBad, text: lx.src[start:lx.pos], pos: start}
			}
			return token{kind: tString, text: s, pos: start}
		}
	}
	return token{kind: tBad, text: lx.src[start:], pos: start}
}

func (lx *lexer) number() token {
	start := lx.pos
	for lx.pos < len(lx.src) && (lx.src[lx.pos] >= '0' && lx.src[lx.pos] <= '9' || lx.src[lx.pos] == '.' || lx.src[lx.pos] == 'e' || lx.src[lx.pos] == 'E' ||
		(lx.src[lx.pos] == '+' || lx.src[lx.pos] == '-') && (lx.src[lx.pos-1] == 'e' || lx.src[lx.pos-1] == 'E')) {
		lx.pos++
	}
	// A unit makes a duration: 30s, 5m, 1h, 1d, 1w, 100ms, and sums like 1h30m.
	if lx.pos < len(lx.src) && strings.ContainsRune("smhdw", rune(lx.src[lx.pos])) {
		for lx.pos < len(lx.src) && (lx.src[lx.pos] >= '0' && lx.src[lx.pos] <= '9' || strings.ContainsRune("smhdw", rune(lx.src[lx.pos]))) {
			lx.pos++
		}
		return token{kind: tDuration, text: lx.src[start:lx.pos], pos: start}
	}
	return token{kind: tNumber, text: lx.src[start:lx.pos], pos: start}
}

// ParseDuration parses a duration as the expression language writes it:
// Go durations plus d (24h) and w (7d) units, e.g. "1d12h", "90s".
func ParseDuration(s string) (time.Duration, error) {
	var total time.Duration
	rest := s
	if rest == "" {
		return 0, fmt.Errorf("%w: empty duration", ErrExpr)
	}
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i > 9 {
			return 0, fmt.Errorf("%w: bad duration %q", ErrExpr, s)
		}
		n, _ := strconv.Atoi(rest[:i])
		rest = rest[i:]
		unit := time.Duration(0)
		switch {
		case strings.HasPrefix(rest, "ms"):
			unit, rest = time.Millisecond, rest[2:]
		case strings.HasPrefix(rest, "s"):
			unit, rest = time.Second, rest[1:]
		case strings.HasPrefix(rest, "m"):
			unit, rest = time.Minute, rest[1:]
		case strings.HasPrefix(rest, "h"):
			unit, rest = time.Hour, rest[1:]
		case strings.HasPrefix(rest, "d"):
			unit, rest = 24*time.Hour, rest[1:]
		case strings.HasPrefix(rest, "w"):
			unit, rest = 7*24*time.Hour, rest[1:]
		default:
			return 0, fmt.Errorf("%w: bad duration %q", ErrExpr, s)
		}
		total += time.Duration(n) * unit
		if total > 366*24*time.Hour {
			return 0, fmt.Errorf("%w: duration %q longer than a year", ErrExpr, s)
		}
	}
	return total, nil
}

type parser struct {
	lx  lexer
	tok token
	err error
}

func (p *parser) next() { p.tok = p.lx.next() }

func (p *parser) errorf(format string, args ...any) error {
	if p.err == nil {
		p.err = fmt.Errorf("%w: at %d: %s", ErrExpr, p.tok.pos, fmt.Sprintf(format, args...))
	}
	p.tok = token{kind: tEOF, pos: p.tok.pos}
	return p.err
}

// Binary operators by precedence, loosest first.
var precedence = map[string]int{"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, ">": 3, "<": 3, ">=": 3, "<=": 3, "+": 4, "-": 4, "*": 5, "/": 5}

func (p *parser) binop() (string, bool) {
	switch p.tok.kind {
	case tOp:
		if _, ok := precedence[p.tok.text]; ok && p.tok.text != "=" {
			return p.tok.text, true
		}
	case tIdent:
		if t := p.tok.text; t == "and" || t == "or" || t == "unless" {
			return t, true
		}
	}
	return "", false
}

const maxDepth = 64

func (p *parser) expr(depth int) node {
	return p.binaryExpr(1, depth)
}

func (p *parser) binaryExpr(minPrec, depth int) node {
	if depth > maxDepth {
		p.errorf("nested too deeply")
		return &numberLit{}
	}
	l := p.unary(depth + 1)
	for p.err == nil {
		op, ok := p.binop()
		if !ok || precedence[op] < minPrec {
			return l
		}
		p.next()
		r := p.binaryExpr(precedence[op]+1, depth+1)
		l = &binary{op: op, l: l, r: r}
	}
	return l
}

func (p *parser) unary(depth int) node {
	if p.tok.kind == tOp && p.tok.text == "-" {
		p.next()
		return &unaryNeg{x: p.unary(depth + 1)}
	}
	return p.primary(depth)
}

func (p *parser) primary(depth int) node {
	if depth > maxDepth {
		p.errorf("nested too deeply")
		return &numberLit{}
	}
	t := p.tok
	switch t.kind {
	case tNumber:
		p.next()
		v, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			p.errorf("bad number %q", t.text)
		}
		return &numberLit{v: v}
	case tDuration:
		p.next()
		d, err := ParseDuration(t.text)
		if err != nil {
			p.errorf("%v", err)
		}
		return &numberLit{v: d.Seconds()}
	case tLParen:
		p.next()
		n := p.binaryExpr(1, depth+1)
		if p.tok.kind != tRParen {
			p.errorf("want )")
		}
		p.next()
		return n
	case tIdent:
		p.next()
		if _, ok := aggregations[t.text]; ok && (p.tok.kind == tLParen || p.tok.kind == tIdent && p.tok.text == "by") {
			return p.aggregation(t.text, depth)
		}
		if p.tok.kind == tLParen {
			return p.call(t.text, depth)
		}
		return p.selector(t.text)
	case tLBrace:
		p.errorf("a selector needs a metric name")
	case tEOF:
		p.errorf("unexpected end")
	default:
		p.errorf("unexpected %q", t.text)
	}
	return &numberLit{}
}

var aggregations = map[string]struct{}{"sum": {}, "min": {}, "max": {}, "avg": {}, "count": {}}

func (p *parser) aggregation(op string, depth int) node {
	a := &aggregate{op: op}
	if p.tok.kind == tIdent && p.tok.text == "by" {
		p.next()
		a.by = p.labelList()
	}
	if p.tok.kind != tLParen {
		p.errorf("want ( after %s", op)
		return a
	}
	p.next()
	a.x = p.binaryExpr(1, depth+1)
	if p.tok.kind != tRParen {
		p.errorf("want )")
	}
	p.next()
	if p.tok.kind == tIdent && p.tok.text == "by" && a.by == nil {
		p.next()
		a.by = p.labelList()
	}
	return a
}

func (p *parser) labelList() []string {
	if p.tok.kind != tLParen {
		p.errorf("want ( after by")
		return nil
	}
	p.next()
	out := []string{}
	for p.tok.kind == tIdent {
		out = append(out, p.tok.text)
		p.next()
		if p.tok.kind != tComma {
			break
		}
		p.next()
	}
	if p.tok.kind != tRParen {
		p.errorf("want ) after labels")
	}
	p.next()
	return out
}

func (p *parser) call(fn string, depth int) node {
	p.next() // (
	if fn == "analytics" {
		return p.analytics()
	}
	c := &call{fn: fn}
	for p.tok.kind != tRParen && p.err == nil {
		c.args = append(c.args, p.binaryExpr(1, depth+1))
		if p.tok.kind != tComma {
			break
		}
		p.next()
	}
	if p.tok.kind != tRParen {
		p.errorf("want ) after the arguments of %s", fn)
	}
	p.next()
	return c
}

// analytics("metric", "by", step)[range]
func (p *parser) analytics() node {
	a := &analyticsSel{step: time.Minute}
	if p.tok.kind != tString {
		p.errorf("analytics wants a metric name in quotes")
		return a
	}
	a.metric = p.tok.text
	p.next()
	if p.tok.kind == tComma {
		p.next()
		if p.tok.kind != tString {
			p.errorf("analytics wants a dimension in quotes")
			return a
		}
		a.by = p.tok.text
		p.next()
	}
	if p.tok.kind == tComma {
		p.next()
		if p.tok.kind != tDuration {
			p.errorf("analytics wants a step duration")
			return a
		}
		d, err := ParseDuration(p.tok.text)
		if err != nil || d <= 0 {
			p.errorf("bad step %q", p.tok.text)
		}
		a.step = d
		p.next()
	}
	if p.tok.kind != tRParen {
		p.errorf("want ) after analytics")
		return a
	}
	p.next()
	a.rng = p.rangeSuffix()
	if a.rng == 0 && p.err == nil {
		p.errorf("analytics wants a range, e.g. analytics(\"events\")[1h]")
	}
	return a
}

func (p *parser) rangeSuffix() time.Duration {
	if p.tok.kind != tLBrack {
		return 0
	}
	p.next()
	if p.tok.kind != tDuration {
		p.errorf("want a duration in [ ]")
		return 0
	}
	d, err := ParseDuration(p.tok.text)
	if err != nil || d <= 0 {
		p.errorf("bad range %q", p.tok.text)
	}
	p.next()
	if p.tok.kind != tRBrack {
		p.errorf("want ]")
	}
	p.next()
	return d
}

func (p *parser) selector(name string) node {
	s := &selector{name: name}
	if p.tok.kind == tLBrace {
		p.next()
		for p.tok.kind == tIdent {
			m, err := p.matcher()
			if err != nil {
				return s
			}
			s.matchers = append(s.matchers, m)
			if p.tok.kind != tComma {
				break
			}
			p.next()
		}
		if p.tok.kind != tRBrace {
			p.errorf("want } in the selector of %s", name)
		}
		p.next()
	}
	s.rng = p.rangeSuffix()
	return s
}

func (p *parser) matcher() (Matcher, error) {
	if p.tok.kind != tIdent {
		return Matcher{}, p.errorf("want a label name")
	}
	name := p.tok.text
	p.next()
	var t MatchType
	switch p.tok.text {
	case "=":
		t = MatchEqual
	case "!=":
		t = MatchNotEqual
	case "=~":
		t = MatchRegexp
	case "!~":
		t = MatchNotRegexp
	default:
		return Matcher{}, p.errorf("want =, !=, =~ or !~ after %s", name)
	}
	p.next()
	var val string
	switch p.tok.kind {
	case tString, tIdent, tNumber:
		val = p.tok.text
	default:
		return Matcher{}, p.errorf("want a value for %s", name)
	}
	p.next()
	m, err := NewMatcher(t, name, val)
	if err != nil {
		p.err = err
		p.tok = token{kind: tEOF}
	}
	return m, err
}

// Kinds of values, checked when parsing.
const (
	kScalar = iota
	kVector
	kRange
)

type funcSpec struct {
	args []int // kinds of the arguments
	opt  int   // trailing arguments that may be left out
	out  int
}

var funcs = map[string]funcSpec{
	"rate":               {args: []int{kRange}, out: kVector},
	"increase":           {args: []int{kRange}, out: kVector},
	"delta":              {args: []int{kRange}, out: kVector},
	"deriv":              {args: []int{kRange}, out: kVector},
	"avg_over_time":      {args: []int{kRange}, out: kVector},
	"min_over_time":      {args: []int{kRange}, out: kVector},
	"max_over_time":      {args: []int{kRange}, out: kVector},
	"sum_over_time":      {args: []int{kRange}, out: kVector},
	"changes":            {args: []int{kRange}, out: kVector},
	"predict_linear":     {args: []int{kRange, kScalar}, out: kVector},
	"predict_seasonal":   {args: []int{kRange, kScalar, kScalar}, out: kVector},
	"time_to":            {args: []int{kRange, kScalar}, out: kVector},
	"absent":             {args: []int{kVector}, out: kVector},
	"absent_over_time":   {args: []int{kRange}, out: kVector},
	"ratio":              {args: []int{kVector, kVector}, out: kVector},
	"histogram_quantile": {args: []int{kScalar, kVector}, out: kVector},
	"abs":                {args: []int{kVector}, out: kVector},
	"clamp_min":          {args: []int{kVector, kScalar}, out: kVector},
	"scalar":             {args: []int{kVector}, out: kScalar},
	"vector":             {args: []int{kScalar}, out: kVector},
}

// kindOf returns the kind of n; check has verified it.
func kindOf(n node) int {
	switch n := n.(type) {
	case *numberLit:
		return kScalar
	case *selector:
		if n.rng > 0 {
			return kRange
		}
		return kVector
	case *analyticsSel:
		return kRange
	case *unaryNeg:
		return kindOf(n.x)
	case *binary:
		if kindOf(n.l) == kScalar && kindOf(n.r) == kScalar {
			return kScalar
		}
		return kVector
	case *call:
		return funcs[n.fn].out
	}
	return kVector
}

func check(n node, depth int) error {
	if depth > 4*maxDepth {
		return fmt.Errorf("%w: nested too deeply", ErrExpr)
	}
	switch n := n.(type) {
	case *unaryNeg:
		if kindOf(n.x) == kRange {
			return fmt.Errorf("%w: cannot negate a range", ErrExpr)
		}
		return check(n.x, depth+1)
	case *binary:
		for _, x := range []node{n.l, n.r} {
			if kindOf(x) == kRange {
				return fmt.Errorf("%w: a range [..] needs a function such as rate() around it", ErrExpr)
			}
			if err := check(x, depth+1); err != nil {
				return err
			}
		}
		if (n.op == "and" || n.op == "or" || n.op == "unless") && (kindOf(n.l) != kVector || kindOf(n.r) != kVector) {
			return fmt.Errorf("%w: %s joins two vectors", ErrExpr, n.op)
		}
	case *aggregate:
		if kindOf(n.x) != kVector {
			return fmt.Errorf("%w: %s aggregates a vector", ErrExpr, n.op)
		}
		return check(n.x, depth+1)
	case *call:
		spec, ok := funcs[n.fn]
		if !ok {
			return fmt.Errorf("%w: unknown function %s", ErrExpr, n.fn)
		}
		if len(n.args) > len(spec.args) || len(n.args) < len(spec.args)-spec.opt {
			return fmt.Errorf("%w: %s takes %d arguments", ErrExpr, n.fn, len(spec.args))
		}
		for i, a := range n.args {
			k := kindOf(a)
			if k != spec.args[i] && !(spec.args[i] == kVector && k == kScalar && n.fn != "absent") {
				return fmt.Errorf("%w: argument %d of %s: want %s", ErrExpr, i+1, n.fn, [...]string{"a number", "a vector", "a range such as x[5m]"}[spec.args[i]])
			}
			if err := check(a, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}
