package enrich

import (
	"path"
	"strings"
)

// A rule is one gitignore pattern, compiled.
type rule struct {
	segs    []string // pattern split at "/"; "**" is a segment of its own
	negate  bool     // "!pattern": re-include
	dirOnly bool     // "pattern/": directories only
}

// Rules is one list of gitignore patterns that apply below one directory:
// the patterns of one .sempropignore file or of the configuration. The zero
// value matches nothing. A Rules is immutable once parsed and safe for
// concurrent use.
type Rules struct {
	rules []rule
}

// ParseRules compiles patterns in gitignore syntax, one per element (the
// lines of a .sempropignore file):
//
//   - A blank line or one starting with "#" is nothing; "\#" starts a
//     pattern with "#". Trailing spaces are dropped unless escaped with "\".
//   - "!" negates: a path it matches is included again, unless a directory
//     above it is excluded ("\!" starts a pattern with "!").
//   - A trailing "/" matches directories only.
//   - A pattern with a "/" at its start or in its middle is anchored at the
//     directory of its list; one without matches a name at any depth.
//   - "*" matches anything but "/", "?" one character but "/", "[a-z]" and
//     "[!a-z]" a class. "**/" at the start matches in every directory,
//     "/**" at the end everything inside, "/**/" zero or more directories;
//     other "**" are two "*".
//
// Malformed classes match nothing, as in git. ParseRules never fails.
func ParseRules(lines []string) *Rules {
	rs := &Rules{}
	for _, l := range lines {
		if r, ok := parseRule(l); ok {
			rs.rules = append(rs.rules, r)
		}
	}
	return rs
}

// Len is the number of patterns.
func (rs *Rules) Len() int {
	if rs == nil {
		return 0
	}
	return len(rs.rules)
}

func parseRule(l string) (rule, bool) {
	l = strings.TrimSuffix(l, "\r")
	l = trimTrailingSpaces(l)
	if l == "" || l[0] == '#' {
		return rule{}, false
	}
	var r rule
	switch {
	case l[0] == '!':
		r.negate = true
		l = l[1:]
	case strings.HasPrefix(l, `\!`), strings.HasPrefix(l, `\#`):
		l = l[1:]
	}
	if strings.HasSuffix(l, "/") {
		r.dirOnly = true
		l = strings.TrimRight(l, "/")
	}
	if l == "" {
		return rule{}, false
	}
	anchored := strings.Contains(l, "/")
	l = strings.TrimPrefix(l, "/")
	if l == "" {
		return rule{}, false
	}
	for s := range strings.SplitSeq(l, "/") {
		if s == "" { // "a//b" is "a/b"
			continue
		}
		r.segs = append(r.segs, strings.ReplaceAll(s, "[!", "[^"))
	}
	if !anchored && (len(r.segs) != 1 || r.segs[0] != "**") {
		r.segs = append([]string{"**"}, r.segs...)
	}
	return r, true
}

// trimTrailingSpaces drops trailing spaces that are not escaped.
func trimTrailingSpaces(l string) string {
	for strings.HasSuffix(l, " ") {
		if strings.HasSuffix(l, `\ `) {
			// An escaped space stays (as a plain space).
			return l[:len(l)-2] + " "
		}
		l = l[:len(l)-1]
	}
	return l
}

// match reports whether the rule matches rel (slash-separated, relative to
// the rules' directory, no leading or trailing slash).
func (r *rule) match(rel string, isDir bool) bool {
	if r.dirOnly && !isDir {
		return false
	}
	return matchSegs(r.segs, strings.Split(rel, "/"))
}

func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			rest := pat[1:]
			if len(rest) == 0 {
				// A trailing "/**" matches everything inside, not the
				// directory itself; a pattern that is "**" alone
				// matches everything.
				return len(name) > 0
			}
			for i := 0; i <= len(name); i++ {
				if matchSegs(rest, name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, err := path.Match(pat[0], name[0]); err != nil || !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// decide returns whether rs excludes (true) or re-includes (false) rel,
// and whether any of its patterns matched at all: the last matching
// pattern decides.
func (rs *Rules) decide(rel string, isDir bool) (excluded, matched bool) {
	if rs == nil {
		return false, false
	}
	for i := len(rs.rules) - 1; i >= 0; i-- {
		if rs.rules[i].match(rel, isDir) {
			return !rs.rules[i].negate, true
		}
	}
	return false, false
}

// Match reports whether rs alone excludes rel (relative to the rules'
// directory): the last pattern that matches decides, and a path below an
// excluded directory is excluded whatever later patterns say.
func (rs *Rules) Match(rel string, isDir bool) bool {
	return matchLayers(rel, isDir, func(yield func(string, *Rules) bool) { yield("", rs) })
}

// layers yields (base directory, rules) from the highest precedence (the
// deepest directory) to the lowest.
type layers func(yield func(base string, rs *Rules) bool)

// matchLayers applies gitignore precedence: every directory above rel is
// checked first (an excluded directory excludes everything below it), then
// rel itself; for each, the deepest layer with a matching pattern decides.
func matchLayers(rel string, isDir bool, ls layers) bool {
	for i := 0; i < len(rel); i++ {
		if rel[i] == '/' && decideLayers(rel[:i], true, ls) {
			return true
		}
	}
	return decideLayers(rel, isDir, ls)
}

func decideLayers(p string, isDir bool, ls layers) bool {
	excluded := false
	ls(func(base string, rs *Rules) bool {
		sub := p
		if base != "" {
			if !strings.HasPrefix(p, base+"/") {
				return true
			}
			sub = p[len(base)+1:]
		}
		ex, matched := rs.decide(sub, isDir)
		if matched {
			excluded = ex
			return false
		}
		return true
	})
	return excluded
}
