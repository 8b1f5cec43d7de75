package glob

import (
	"errors"
	"regexp"
	"strings"
	"unicode/utf8"
)

// This file keeps the matcher as it was before the linear one, as a
// reference for differential tests: the recursive segment matcher (which
// is exponential in the number of "**") on the unoptimised segments of
// every brace alternative. It takes a budget of steps and gives up beyond
// it, so that tests can run it on random inputs.

var errBudget = errors.New("reference: over budget")

// refMatch matches path against pattern with the old algorithm. It
// returns errBudget when that takes more than budget steps, and the
// compile error for a malformed pattern.
func refMatch(pattern, path string, budget int) (bool, error) {
	if re, ok := strings.CutPrefix(pattern, RegexpPrefix); ok {
		r, err := regexp.Compile(re)
		if err != nil {
			return false, err
		}
		return r.MatchString(path), nil
	}
	alts, err := expandBraces(pattern)
	if err != nil {
		return false, err
	}
	steps := 0
	for _, a := range alts {
		p, err := parseOne(a)
		if err != nil {
			return false, err
		}
		var ok bool
		switch {
		case p.kind == kindAll, len(p.segs) == 1 && p.segs[0].dstar:
			ok = true
		case p.base:
			ok = refSegMatch(&p.segs[0], baseName(path))
		default:
			ok = refMatchSegments(p.segs, path, false, &steps, budget)
		}
		if steps > budget {
			return false, errBudget
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

func refSegMatch(s *segment, name string) bool {
	switch {
	case s.star:
		return true
	case !s.wild:
		return name == s.pat
	case s.suffix != "":
		return strings.HasSuffix(name, s.suffix)
	}
	return refMatchSegment(s.pat, name)
}

// refMatchSegments is the old matchSegments, with a step counter.
func refMatchSegments(segs []segment, path string, done bool, steps *int, budget int) bool {
	for i := range segs {
		*steps++
		if *steps > budget {
			return false
		}
		s := &segs[i]
		if s.dstar {
			rest := segs[i+1:]
			if len(rest) == 0 {
				return true
			}
			if done {
				return false
			}
			for {
				if refMatchSegments(rest, path, false, steps, budget) {
					return true
				}
				if *steps > budget {
					return false
				}
				j := strings.IndexByte(path, '/')
				if j < 0 {
					return false
				}
				path = path[j+1:]
			}
		}
		if done {
			return false
		}
		name := path
		if j := strings.IndexByte(path, '/'); j >= 0 {
			name, path = path[:j], path[j+1:]
		} else {
			done = true
		}
		if !refSegMatch(s, name) {
			return false
		}
	}
	return done
}

// refMatchSegment is the old matchSegment.
func refMatchSegment(p, s string) bool {
	px, sx := 0, 0
	starPx, starSx := -1, 0
	for px < len(p) || sx < len(s) {
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
					if ok, end := matchClass(p, px, r); ok {
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
		return false
	}
	return true
}
