// Package glob matches slash-separated paths against shell-like patterns with
// "**" (any number of whole segments), "*" (any run inside one segment), "?"
// (one character), character classes ("[a-z]", "[!.]"), brace alternatives
// ("{md,txt}") and backslash escapes. A pattern starting with "re:" is a Go
// regular expression instead.
//
// Patterns are compiled once; a compiled Pattern is immutable and safe for
// concurrent use, and Match does not allocate. Match takes time at most
// proportional to len(pattern) × len(path) whatever the pattern — several
// "**" included — so patterns from untrusted clients are safe to match.
package glob

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Errors returned by Compile. They are wrapped with the offending position.
var (
	ErrBadPattern = errors.New("glob: malformed pattern")
	ErrTooComplex = errors.New("glob: pattern too complex")
)

// RegexpPrefix marks a pattern that is a regular expression.
const RegexpPrefix = "re:"

// maxAlternatives bounds brace expansion so that a pattern stays cheap.
const maxAlternatives = 64

// maxBraces bounds the brace groups of a pattern: expansion rescans the
// pattern once per group.
const maxBraces = 32

// MaxLen bounds the length of a pattern in bytes (paths have at most 4096).
const MaxLen = 16 << 10

type kind uint8

const (
	kindSegments     kind = iota // general segment matcher
	kindAll                      // "**": everything
	kindLiteral                  // no wildcards: equality
	kindPrefix                   // "LIT/**": LIT itself or anything below it
	kindSuffix                   // "**/*SUFFIX" or "*SUFFIX" (base name): ends with SUFFIX
	kindBaseName                 // "**/NAME" or "NAME" (base name): last segment equals NAME
	kindRegexp                   // "re:..."
	kindAlternatives             // brace expansion: any of alts
	kindPrefixBase               // "LIT/**/SEG": below LIT, base name matches SEG
)

// Pattern is a compiled path pattern. It is immutable and safe for
// concurrent use.
type Pattern struct {
	src  string
	kind kind
	lit  string // literal, prefix, suffix or base name, by kind
	// base is true when the pattern has no '/': it then matches the last
	// segment of a path, like a .gitignore entry without a slash.
	base bool
	segs []segment
	re   *regexp.Regexp
	alts []*Pattern
	// tree is set on regexps from CompileTree: they also match when an
	// ancestor of the path matches.
	tree bool
}

type segment struct {
	pat   string // the segment's pattern text
	dstar bool   // "**"
	star  bool   // "*": any single segment
	wild  bool   // contains wildcards; otherwise pat is literal (unescaped)
	// suffix is set for "*LIT" segments: the name must end with LIT.
	suffix string
}

// match matches one path segment and returns the work it took (see
// Pattern.match).
func (s *segment) match(name string) (bool, int) {
	switch {
	case s.star:
		return true, 1
	case !s.wild:
		return name == s.pat, 1 + min(len(name), len(s.pat))
	case s.suffix != "":
		return strings.HasSuffix(name, s.suffix), 1 + len(s.suffix)
	}
	return matchSegment(s.pat, name)
}

// Compile parses a pattern. The empty pattern and "**" match every path.
// Patterns longer than MaxLen, with more than 32 brace groups or 64
// alternatives are refused with ErrTooComplex.
func Compile(pattern string) (*Pattern, error) {
	if len(pattern) > MaxLen {
		return nil, fmt.Errorf("pattern of %d bytes, more than %d: %w", len(pattern), MaxLen, ErrTooComplex)
	}
	if re, ok := strings.CutPrefix(pattern, RegexpPrefix); ok {
		r, err := regexp.Compile(re)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w: %w", pattern, err, ErrBadPattern)
		}
		return &Pattern{src: pattern, kind: kindRegexp, re: r}, nil
	}
	if err := checkSize(pattern); err != nil {
		return nil, err
	}
	alts, err := expandBraces(pattern)
	if err != nil {
		return nil, err
	}
	if len(alts) == 1 {
		p, err := compileOne(alts[0])
		if err != nil {
			return nil, err
		}
		p.src = pattern
		return p, nil
	}
	p := &Pattern{src: pattern, kind: kindAlternatives}
	for _, a := range alts {
		ap, err := compileOne(a)
		if err != nil {
			return nil, err
		}
		p.alts = append(p.alts, ap)
	}
	return p, nil
}

// CompileTree is Compile for a pattern that names a tree: the pattern
// matches what Compile's matches and every path below one of those, as
// deny lists want ("**/.ssh" covers /home/u/.ssh/id_rsa; "*.key" covers
// a directory x.key and its contents). For globs, each brace alternative A
// becomes "A/**" ("**/A/**" when A has no '/', since it then names a base
// name; A unchanged when it already ends in "**"). A regular expression
// matches when it matches the path or one of its ancestors (the path cut
// at a '/').
func CompileTree(pattern string) (*Pattern, error) {
	p, err := Compile(pattern) // errors name the pattern as written
	if err != nil {
		return nil, err
	}
	if p.kind == kindRegexp {
		p.tree = true
		return p, nil
	}
	alts, err := expandBraces(pattern)
	if err != nil {
		return nil, err
	}
	p = &Pattern{src: pattern, kind: kindAlternatives}
	for _, a := range alts {
		switch {
		case a == "" || a == "**" || strings.HasSuffix(a, "/**"):
		case strings.HasSuffix(a, "/"):
			a += "**"
		case strings.IndexByte(a, '/') < 0:
			a = "**/" + a + "/**"
		default:
			a += "/**"
		}
		ap, err := compileOne(a)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", pattern, err)
		}
		p.alts = append(p.alts, ap)
	}
	if len(p.alts) == 1 {
		p.alts[0].src = pattern
		return p.alts[0], nil
	}
	return p, nil
}

// MustCompile is Compile that panics on error, for patterns in code.
func MustCompile(pattern string) *Pattern {
	p, err := Compile(pattern)
	if err != nil {
		panic(err)
	}
	return p
}

// String returns the pattern as written.
func (p *Pattern) String() string { return p.src }

// Dir returns the longest literal path D such that every path the pattern
// matches is D itself or lies below it (starts with D+"/"), e.g. "/data/x"
// for "/data/x/**/*.md". It returns "" when there is none: relative or
// base-name patterns, patterns starting with a wildcard, regexps, braces.
// Routers use it to index many patterns by directory.
func (p *Pattern) Dir() string {
	switch p.kind {
	case kindLiteral:
		if p.base {
			return ""
		}
		return p.lit
	case kindPrefix:
		return p.lit
	case kindPrefixBase:
		return p.lit[:len(p.lit)-1]
	case kindSegments:
		if p.base {
			return ""
		}
		n := 0
		for n < len(p.segs) && !p.segs[n].wild && !p.segs[n].dstar {
			n++
		}
		if n == 0 {
			return ""
		}
		return joinLiteral(p.segs[:n])
	}
	return ""
}

// Match reports whether path matches the pattern. It takes time at most
// proportional to len(pattern) × len(path), whatever the pattern (see
// match), and does not allocate.
func (p *Pattern) Match(path string) bool {
	ok, _ := p.match(path)
	return ok
}

// match is Match that also returns the work it took: the number of loop
// iterations and byte comparisons of the matchers, which is at most
// StepBound(p.String(), path) for patterns that are not regexps. Tests and
// fuzzers check that bound.
func (p *Pattern) match(path string) (bool, int) {
	switch p.kind {
	case kindAll:
		return true, 1
	case kindLiteral:
		if p.base {
			return baseName(path) == p.lit, 1 + len(path)
		}
		return path == p.lit, 1 + len(p.lit)
	case kindPrefix:
		return strings.HasPrefix(path, p.lit) &&
			(len(path) == len(p.lit) || path[len(p.lit)] == '/'), 1 + len(p.lit)
	case kindSuffix:
		return strings.HasSuffix(path, p.lit) &&
			strings.IndexByte(path[len(path)-len(p.lit):], '/') < 0, 1 + 2*len(p.lit)
	case kindBaseName:
		return baseName(path) == p.lit, 1 + len(path)
	case kindRegexp:
		if p.re.MatchString(path) {
			return true, 1 + len(path)
		}
		if p.tree {
			for i := len(path) - 1; i >= 0; i-- {
				if path[i] == '/' && p.re.MatchString(path[:i]) {
					return true, 1 + len(path)
				}
			}
		}
		return false, 1 + len(path)
	case kindPrefixBase:
		if !strings.HasPrefix(path, p.lit) {
			return false, 1 + len(p.lit)
		}
		ok, n := p.segs[0].match(baseName(path[len(p.lit):]))
		return ok, 1 + len(p.lit) + len(path) + n
	case kindAlternatives:
		steps := 0
		for _, a := range p.alts {
			ok, n := a.match(path)
			steps += n
			if ok {
				return true, steps
			}
		}
		return false, steps
	}
	if p.base {
		ok, n := p.segs[0].match(baseName(path))
		return ok, 1 + len(path) + n
	}
	return matchSegments(p.segs, path)
}

// StepBound is the most work Match may take for a pattern written as
// pattern (before brace expansion) on path, in the unit of match: a
// constant times (len(pattern)+2) × (len(path)+2), times the number of
// brace alternatives. It is exported for tests and fuzzers of packages
// that match globs.
func StepBound(pattern, path string) int {
	alts := 1
	if strings.ContainsAny(pattern, "{") {
		alts = maxAlternatives
	}
	return alts * 8 * (len(pattern) + 2) * (len(path) + 2)
}

func baseName(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[i+1:]
	}
	return path
}

func compileOne(pattern string) (*Pattern, error) {
	p, err := parseOne(pattern)
	if err != nil || p.kind == kindAll {
		return p, err
	}
	p.optimize()
	return p, nil
}

// parseOne parses a pattern without braces into segments, without picking
// a specialised matcher: the result matches with the general one.
func parseOne(pattern string) (*Pattern, error) {
	p := &Pattern{src: pattern}
	if pattern == "" {
		p.kind = kindAll
		return p, nil
	}
	p.base = strings.IndexByte(pattern, '/') < 0
	off := 0
	for part := range strings.SplitSeq(pattern, "/") {
		s := segment{pat: part}
		switch {
		case part == "**":
			s.dstar = true
		case part == "*":
			s.star, s.wild = true, true
		default:
			w, err := checkSegment(part, off)
			if err != nil {
				return nil, fmt.Errorf("pattern %q: %w: %w", pattern, err, ErrBadPattern)
			}
			s.wild = w
			if !w {
				s.pat = unescape(part)
			} else if isStarSuffix(part) {
				s.suffix = part[1:]
			}
		}
		off += len(part) + 1
		// Consecutive "**" are one "**".
		if s.dstar && len(p.segs) > 0 && p.segs[len(p.segs)-1].dstar {
			continue
		}
		p.segs = append(p.segs, s)
	}
	return p, nil
}

// optimize picks a specialised matcher for the common shapes.
func (p *Pattern) optimize() {
	segs := p.segs
	allLiteral := true
	for _, s := range segs {
		if s.wild || s.dstar {
			allLiteral = false
		}
	}
	last := segs[len(segs)-1]
	switch {
	case len(segs) == 1 && last.dstar:
		p.kind = kindAll
	case allLiteral:
		p.kind, p.lit = kindLiteral, joinLiteral(segs)
	case p.base && isStarSuffix(last.pat):
		p.kind, p.lit = kindSuffix, unescape(last.pat[1:])
	case len(segs) == 2 && segs[0].dstar && !last.wild:
		p.kind, p.lit = kindBaseName, last.pat
	case len(segs) == 2 && segs[0].dstar && isStarSuffix(last.pat):
		p.kind, p.lit = kindSuffix, unescape(last.pat[1:])
	case len(segs) >= 2 && last.dstar && literalSegs(segs[:len(segs)-1]):
		p.kind, p.lit = kindPrefix, joinLiteral(segs[:len(segs)-1])
	case len(segs) >= 3 && segs[len(segs)-2].dstar && !last.dstar && literalSegs(segs[:len(segs)-2]):
		p.kind, p.lit = kindPrefixBase, joinLiteral(segs[:len(segs)-2])+"/"
		p.segs = segs[len(segs)-1:]
	}
}

func literalSegs(segs []segment) bool {
	for _, s := range segs {
		if s.wild || s.dstar {
			return false
		}
	}
	return true
}

func joinLiteral(segs []segment) string {
	parts := make([]string, len(segs))
	for i, s := range segs {
		parts[i] = s.pat
	}
	return strings.Join(parts, "/")
}

// isStarSuffix reports whether a segment is "*" followed by literal text.
func isStarSuffix(seg string) bool {
	if len(seg) < 2 || seg[0] != '*' {
		return false
	}
	return !strings.ContainsAny(seg[1:], "*?[\\")
}

// checkSegment validates one segment and reports whether it has wildcards.
// off is the segment's byte offset in the whole pattern, for errors.
func checkSegment(seg string, off int) (wild bool, err error) {
	for i := 0; i < len(seg); i++ {
		switch seg[i] {
		case '*', '?':
			wild = true
		case '\\':
			if i+1 >= len(seg) {
				return false, fmt.Errorf("trailing backslash at offset %d", off+i)
			}
			i++
		case '[':
			end, err := checkClass(seg, i)
			if err != nil {
				return false, fmt.Errorf("%w at offset %d", err, off+i)
			}
			wild = true
			i = end - 1
		}
	}
	return wild, nil
}

// checkClass validates the class starting at seg[i] == '[' and returns the
// index just past its closing ']'.
func checkClass(seg string, i int) (int, error) {
	j := i + 1
	if j < len(seg) && (seg[j] == '!' || seg[j] == '^') {
		j++
	}
	n := 0
	for j < len(seg) && seg[j] != ']' {
		lo, w, err := classChar(seg, j)
		if err != nil {
			return 0, err
		}
		j += w
		if j < len(seg) && seg[j] == '-' && j+1 < len(seg) && seg[j+1] != ']' {
			hi, w, err := classChar(seg, j+1)
			if err != nil {
				return 0, err
			}
			if hi < lo {
				return 0, errors.New("bad range in character class")
			}
			j += 1 + w
		}
		n++
	}
	if j >= len(seg) {
		return 0, errors.New("unterminated character class")
	}
	if n == 0 {
		return 0, errors.New("empty character class")
	}
	return j + 1, nil
}

func classChar(seg string, j int) (rune, int, error) {
	if seg[j] == '\\' {
		if j+1 >= len(seg) {
			return 0, 0, errors.New("trailing backslash in character class")
		}
		r, w := utf8.DecodeRuneInString(seg[j+1:])
		return r, w + 1, nil
	}
	r, w := utf8.DecodeRuneInString(seg[j:])
	return r, w, nil
}

// matchClass matches r against the well-formed class at p[i] == '[' and
// returns whether it matched and the index just past the class.
func matchClass(p string, i int, r rune) (bool, int) {
	j := i + 1
	negate := false
	if p[j] == '!' || p[j] == '^' {
		negate = true
		j++
	}
	matched := false
	for p[j] != ']' {
		lo, w, _ := classChar(p, j)
		j += w
		hi := lo
		if p[j] == '-' && p[j+1] != ']' {
			h, w, _ := classChar(p, j+1)
			hi = h
			j += 1 + w
		}
		if lo <= r && r <= hi {
			matched = true
		}
	}
	return matched != negate, j + 1
}

func unescape(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// matchSegments matches path against segs, where "**" matches any number
// of whole segments (none included) and every other segment exactly one,
// and returns the work it took.
//
// It is the greedy wildcard algorithm over segments: segments are matched
// left to right; at a "**" the position is remembered, and on a mismatch
// the last "**" absorbs one more path segment and matching resumes just
// after it. Backtracking to the last "**" only is enough: what an earlier
// "**" would absorb instead, the last one can absorb as well. Within the
// span of one "**" the resume position only moves right, so each pair
// (pattern segment, path segment) is compared at most once: at most
// len(segs) × segments(path) comparisons, each linear in the two segments
// (matchSegment), O(len(pattern) × len(path)) in all.
func matchSegments(segs []segment, path string) (bool, int) {
	steps := 0
	pi := 0        // next pattern segment
	si := 0        // start of the next path segment
	sdone := false // no path segment left
	starP := -1    // index of the last "**" seen, or -1
	starS := 0     // start of the path segment the last "**" absorbs next
	starDone := false
	for {
		steps++
		if pi < len(segs) && segs[pi].dstar {
			if pi == len(segs)-1 {
				return true, steps // a trailing "**" takes the rest
			}
			starP, starS, starDone = pi, si, sdone
			pi++
			continue
		}
		if pi == len(segs) {
			if sdone {
				return true, steps
			}
		} else if !sdone {
			name, next, last := path[si:], 0, true
			if j := strings.IndexByte(name, '/'); j >= 0 {
				name, next, last = name[:j], si+j+1, false
			}
			ok, n := segs[pi].match(name)
			steps += n
			if ok {
				pi++
				si, sdone = next, last
				continue
			}
		}
		// Mismatch: the last "**" absorbs one more segment.
		if starP < 0 || starDone {
			return false, steps
		}
		if j := strings.IndexByte(path[starS:], '/'); j >= 0 {
			starS += j + 1
		} else {
			starDone = true
		}
		pi, si, sdone = starP+1, starS, starDone
	}
}

// matchSegment matches one path segment against a validated segment pattern
// without '/', backtracking only to the last '*' (the same greedy algorithm
// as matchSegments, over characters), and returns the work it took: at
// most 2 × (len(p)+1) × (len(s)+1) iterations.
func matchSegment(p, s string) (bool, int) {
	px, sx := 0, 0
	starPx, starSx := -1, 0
	steps := 0
	for px < len(p) || sx < len(s) {
		steps++
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				starPx, starSx = px, sx
				px++
				continue
			case '?':
				if sx < len(s) {
					_, w := utf8.DecodeRuneInString(s[sx:])
					px++
					sx += w
					continue
				}
			case '[':
				if sx < len(s) {
					r, w := utf8.DecodeRuneInString(s[sx:])
					ok, end := matchClass(p, px, r)
					steps += end - px
					if ok {
						px = end
						sx += w
						continue
					}
				}
			case '\\':
				if sx < len(s) && p[px+1] == s[sx] {
					px += 2
					sx++
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		if starPx >= 0 && starSx < len(s) {
			_, w := utf8.DecodeRuneInString(s[starSx:])
			starSx += w
			px, sx = starPx+1, starSx
			continue
		}
		return false, steps
	}
	return true, steps + 1
}

// checkSize refuses patterns with too many brace groups to compile
// cheaply.
func checkSize(pattern string) error {
	n := 0
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case '\\':
			i++
		case '{':
			if n++; n > maxBraces {
				return fmt.Errorf("pattern %.40q…: more than %d brace groups: %w", pattern, maxBraces, ErrTooComplex)
			}
		}
	}
	return nil
}

// expandBraces expands "{a,b}" alternatives (nested allowed) into plain
// patterns.
func expandBraces(pattern string) ([]string, error) {
	open := -1
	depth := 0
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case '\\':
			i++
		case '[':
			// Braces inside classes are literal.
			for i < len(pattern) && pattern[i] != ']' {
				if pattern[i] == '\\' {
					i++
				}
				i++
			}
		case '{':
			if depth == 0 {
				open = i
			}
			depth++
		case '}':
			if depth == 0 {
				return nil, fmt.Errorf("pattern %q: unmatched '}' at offset %d: %w", pattern, i, ErrBadPattern)
			}
			depth--
			if depth == 0 {
				return expandGroup(pattern, open, i)
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("pattern %q: unterminated '{' at offset %d: %w", pattern, open, ErrBadPattern)
	}
	return []string{pattern}, nil
}

// expandGroup expands the top-level group pattern[open:close+1].
func expandGroup(pattern string, open, close int) ([]string, error) {
	prefix, body, suffix := pattern[:open], pattern[open+1:close], pattern[close+1:]
	var choices []string
	depth, start := 0, 0
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '\\':
			i++
		case '{':
			depth++
		case '}':
			depth--
		case ',':
			if depth == 0 {
				choices = append(choices, body[start:i])
				start = i + 1
			}
		}
	}
	choices = append(choices, body[start:])
	var out []string
	for _, c := range choices {
		exp, err := expandBraces(prefix + c + suffix)
		if err != nil {
			return nil, err
		}
		out = append(out, exp...)
		if len(out) > maxAlternatives {
			return nil, fmt.Errorf("pattern %q: more than %d alternatives: %w", pattern, maxAlternatives, ErrTooComplex)
		}
	}
	return out, nil
}
