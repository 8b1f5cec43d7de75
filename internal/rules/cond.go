package rules

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/cep"
	"github.com/semprop/semprop/internal/filter"
	"time"
)

// cond is a compiled condition. Conditions that read no bound event are a
// filter.Expr (the --filter language, run natively where it can be);
// conditions that read bound events (`subject == w.subject`) first check
// the conjuncts that read none of them with a filter.Expr, then run the
// whole expression on the expr VM over the event and the bound events.
type cond struct {
	src   string
	pre   filter.Filter // nil: nothing to check first
	prog  *vm.Program   // nil: pre (and eqs) are the whole condition
	eqs   []boundEq     // native comparisons with bound events
	names []string      // bound names the program reads, in env order
	slots []int         // for each name, its index in the bound events
	typ   reflect.Type
	pool  sync.Pool  // of *condState
	types []string   // event types the condition can accept; nil: any
	free  []ast.Node // the top-level conjuncts that read no bound event
	// settle is the rule's settle time: the condition accepts only the
	// settled events of that time (0: only events as they were read).
	settle time.Duration
}

// assumeType drops the conjuncts `type == typ` from the native check: the
// engine shows the condition only events of type typ (its pattern reads
// that one type), so they always hold.
func (c *cond) assumeType(typ string) error {
	var rest []string
	dropped := false
	for _, n := range c.free {
		if b, ok := n.(*ast.BinaryNode); ok && b.Operator == "==" {
			if s, ok := typeCompare(b.Left, b.Right); ok && s == typ {
				dropped = true
				continue
			}
			if s, ok := typeCompare(b.Right, b.Left); ok && s == typ {
				dropped = true
				continue
			}
		}
		rest = append(rest, "("+n.String()+")")
	}
	if !dropped {
		return nil
	}
	if len(rest) == 0 {
		c.pre = nil
		return nil
	}
	f, err := filter.Expr(strings.Join(rest, " && "))
	if err != nil {
		return err
	}
	c.pre = f
	return nil
}

type condState struct {
	vm   vm.VM
	env  any           // pointer to a struct of typ
	envs []*filter.Env // the event's Env, then one per name
}

var _ cep.Cond = (*cond)(nil)

// compileCond compiles src; bound maps the names the condition may read
// to the index of the bound event they stand for.
func compileCond(src string, bound map[string]int) (*cond, error) {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, exprError(src, err)
	}
	c := &cond{src: src}
	c.types, _ = typesOf(tree.Node)
	for _, n := range conjuncts(tree.Node) {
		if len(boundReads(n, bound)) == 0 {
			c.free = append(c.free, n)
		}
	}
	reads := boundReads(tree.Node, bound)
	if len(reads) == 0 {
		f, err := filter.Expr(src)
		if err != nil {
			return nil, err
		}
		c.pre = f
		return c, nil
	}
	// The conjuncts that read no bound event, checked first and natively;
	// if the others are all `field == name.field`, they run natively too.
	var free []string
	var eqs []boundEq
	lowered := true
	for _, n := range conjuncts(tree.Node) {
		if len(boundReads(n, bound)) == 0 {
			free = append(free, "("+n.String()+")")
		} else if eq, ok := lowerBoundEq(n, bound); ok {
			eqs = append(eqs, eq)
		} else {
			lowered = false
		}
	}
	if len(free) > 0 {
		if c.pre, err = filter.Expr(strings.Join(free, " && ")); err != nil {
			return nil, err
		}
	}
	fields := []reflect.StructField{{Name: "Env", Type: envType, Anonymous: true}}
	for i, name := range reads {
		fields = append(fields, reflect.StructField{Name: fmt.Sprintf("B%d", i), Type: envType,
			Tag: reflect.StructTag(fmt.Sprintf(`expr:"%s"`, name))})
		c.names = append(c.names, name)
		c.slots = append(c.slots, bound[name])
	}
	c.typ = reflect.StructOf(fields)
	c.prog, err = expr.Compile(src, expr.Env(reflect.New(c.typ).Interface()), expr.AsBool(),
		expr.MaxNodes(filter.MaxExprNodes))
	if err != nil {
		return nil, exprError(src, err)
	}
	if lowered {
		c.prog, c.eqs = nil, eqs // compiled above only to check it
	}
	return c, nil
}

// boundEq is `field == name.field`: a field of the event equal to a field
// of a bound event, both read as expressions read them.
type boundEq struct {
	slot     int
	get, ref func(*event.Event) (string, int64)
}

func (q *boundEq) match(ev *event.Event, bound []*event.Event) bool {
	if q.slot >= len(bound) {
		return false
	}
	s1, n1 := q.get(ev)
	s2, n2 := q.ref(bound[q.slot])
	return s1 == s2 && n1 == n2
}

// lowerBoundEq lowers `f == name.g` (either way round) where f and g are
// both string fields or both numeric fields.
func lowerBoundEq(n ast.Node, bound map[string]int) (boundEq, bool) {
	b, ok := n.(*ast.BinaryNode)
	if !ok || b.Operator != "==" {
		return boundEq{}, false
	}
	for _, lr := range [][2]ast.Node{{b.Left, b.Right}, {b.Right, b.Left}} {
		id, ok1 := lr[0].(*ast.IdentifierNode)
		m, ok2 := lr[1].(*ast.MemberNode)
		if !ok1 || !ok2 {
			continue
		}
		base, ok3 := m.Node.(*ast.IdentifierNode)
		prop, ok4 := m.Property.(*ast.StringNode)
		if !ok3 || !ok4 || m.Optional {
			continue
		}
		slot, ok := bound[base.Value]
		if !ok {
			continue
		}
		get, numeric1, ok5 := fieldGetter(id.Value)
		ref, numeric2, ok6 := fieldGetter(prop.Value)
		if ok5 && ok6 && numeric1 == numeric2 {
			return boundEq{slot: slot, get: get, ref: ref}, true
		}
	}
	return boundEq{}, false
}

// fieldGetter reads a built-in field as Env has it: strings as they are,
// numbers as -1 when absent.
func fieldGetter(name string) (get func(*event.Event) (string, int64), numeric, ok bool) {
	if f, ok := strFields[name]; ok {
		return func(ev *event.Event) (string, int64) { return f(ev), 0 }, false, true
	}
	if f, ok := numFields[name]; ok {
		return func(ev *event.Event) (string, int64) {
			v, ok := f(ev)
			if !ok {
				v = -1
			}
			return "", v
		}, true, true
	}
	return nil, false, false
}

var envType = reflect.TypeFor[filter.Env]()

func exprError(src string, err error) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		return fmt.Errorf("%q: line %d, column %d: %s: %w", src, fe.Line, fe.Column+1, fe.Message, filter.ErrExpr)
	}
	return fmt.Errorf("%q: %w: %w", src, err, filter.ErrExpr)
}

// Match reports whether ev passes, given the bound events.
func (c *cond) Match(ev *event.Event, bound []*event.Event) bool {
	if ev.Seq&settledSeq != 0 || c.settle != 0 {
		if !isSettledFor(ev, c.settle) {
			return false
		}
	}
	if c.pre != nil && !c.pre.Match(ev) {
		return false
	}
	for i := range c.eqs {
		if !c.eqs[i].match(ev, bound) {
			return false
		}
	}
	if c.prog == nil {
		return true
	}
	for _, s := range c.slots {
		if s >= len(bound) {
			return false
		}
	}
	st, _ := c.pool.Get().(*condState)
	if st == nil {
		v := reflect.New(c.typ)
		st = &condState{env: v.Interface()}
		for i := range v.Elem().NumField() {
			st.envs = append(st.envs, v.Elem().Field(i).Addr().Interface().(*filter.Env))
		}
	}
	fillEnv(st.envs[0], ev)
	for i, s := range c.slots {
		fillEnv(st.envs[i+1], bound[s])
	}
	out, err := st.vm.Run(c.prog, st.env)
	for _, e := range st.envs {
		e.Attrs = nil
	}
	c.pool.Put(st)
	if err != nil {
		return false // a runtime error rejects, as in filters
	}
	b, _ := out.(bool)
	return b
}

// boundReads lists the bound names that n reads, sorted.
func boundReads(n ast.Node, bound map[string]int) []string {
	v := &identVisitor{}
	ast.Walk(&n, v)
	var out []string
	for _, name := range v.names {
		if _, ok := bound[name]; ok && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

type identVisitor struct{ names []string }

func (v *identVisitor) Visit(n *ast.Node) {
	if id, ok := (*n).(*ast.IdentifierNode); ok {
		v.names = append(v.names, id.Value)
	}
}

func isAnd(op string) bool { return op == "&&" || op == "and" }
func isOr(op string) bool  { return op == "||" || op == "or" }

// conjuncts splits n at its top-level ands.
func conjuncts(n ast.Node) []ast.Node {
	if b, ok := n.(*ast.BinaryNode); ok && isAnd(b.Operator) {
		return append(conjuncts(b.Left), conjuncts(b.Right)...)
	}
	return []ast.Node{n}
}

// typesOf returns the event types n can accept, when the expression says
// (`type == "x"`, `type in [...]`, and/or of those); ok is false when any
// type may pass.
func typesOf(n ast.Node) (types []string, ok bool) {
	switch n := n.(type) {
	case *ast.BinaryNode:
		switch {
		case isAnd(n.Operator):
			l, okl := typesOf(n.Left)
			r, okr := typesOf(n.Right)
			switch {
			case okl && okr:
				var both []string
				for _, t := range l {
					if slices.Contains(r, t) {
						both = append(both, t)
					}
				}
				return nonNil(both), true
			case okl:
				return l, true
			case okr:
				return r, true
			}
			return nil, false
		case isOr(n.Operator):
			l, okl := typesOf(n.Left)
			r, okr := typesOf(n.Right)
			if !okl || !okr {
				return nil, false
			}
			u := append(slices.Clone(l), r...)
			slices.Sort(u)
			return nonNil(slices.Compact(u)), true
		case n.Operator == "==":
			if s, ok := typeCompare(n.Left, n.Right); ok {
				return []string{s}, true
			}
			if s, ok := typeCompare(n.Right, n.Left); ok {
				return []string{s}, true
			}
		case n.Operator == "in":
			id, ok := n.Left.(*ast.IdentifierNode)
			arr, ok2 := n.Right.(*ast.ArrayNode)
			if !ok || !ok2 || id.Value != "type" {
				return nil, false
			}
			var out []string
			for _, e := range arr.Nodes {
				s, ok := e.(*ast.StringNode)
				if !ok {
					return nil, false
				}
				out = append(out, s.Value)
			}
			slices.Sort(out)
			return nonNil(slices.Compact(out)), true
		}
	case *ast.BoolNode:
		if !n.Value {
			return []string{}, true
		}
	}
	return nil, false
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func typeCompare(id, lit ast.Node) (string, bool) {
	i, ok := id.(*ast.IdentifierNode)
	s, ok2 := lit.(*ast.StringNode)
	if !ok || !ok2 || i.Value != "type" {
		return "", false
	}
	return s.Value, true
}
