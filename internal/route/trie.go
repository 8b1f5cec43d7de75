package route

import "strings"

// node is a level of the type-pattern trie. Routes are stored by index in
// the table's route list. A node is immutable once its table is published.
type node struct {
	lit  map[string]*node
	star *node
	gt   []int32 // routes whose pattern ends with ">" right after this node
	end  []int32 // routes whose pattern ends at this node
}

func (n *node) insert(toks []string, idx int32) {
	for _, t := range toks {
		switch t {
		case ">":
			n.gt = append(n.gt, idx)
			return
		case "*":
			if n.star == nil {
				n.star = &node{}
			}
			n = n.star
		default:
			if n.lit == nil {
				n.lit = make(map[string]*node)
			}
			c := n.lit[t]
			if c == nil {
				c = &node{}
				n.lit[t] = c
			}
			n = c
		}
	}
	n.end = append(n.end, idx)
}

// collect appends the indices of the routes whose pattern matches typ.
// typ must be valid (non-empty tokens); each route is found at most once,
// since a type follows each pattern along exactly one path.
func (n *node) collect(rest string, out []int32) []int32 {
	out = append(out, n.gt...)
	tok, more := rest, false
	if j := strings.IndexByte(rest, '.'); j >= 0 {
		tok, rest, more = rest[:j], rest[j+1:], true
	}
	for _, c := range [2]*node{n.lit[tok], n.star} {
		if c == nil {
			continue
		}
		if more {
			out = c.collect(rest, out)
		} else {
			out = append(out, c.end...)
		}
	}
	return out
}
