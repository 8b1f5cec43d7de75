package filter

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"

	"github.com/semprop/semprop/event"
)

// MaxExprCost bounds the work of one evaluation of an expression, in
// steps: a step is about one VM instruction or 16 bytes of string work,
// some tens of nanoseconds. Expr refuses an expression whose worst case
// exceeds it, so that no event can make a filter run for long (a loop
// over a large range once took 37 s per event).
const MaxExprCost = 250_000

// The input bounds the cost model assumes: every string attribute of an
// event has at most maxExprString bytes and there are at most
// maxExprAttrs extension attributes (the event validation limits; kernel
// paths are at most PATH_MAX). An evaluation on an event beyond them is
// refused at run time (no match, counted in EvalErrors).
var (
	maxExprString = event.DefaultLimits.MaxString
	maxExprAttrs  = event.DefaultLimits.MaxAttrs
)

// maxLen is the longest value of a string field the cost model assumes:
// the event validation limits (a type has at most 255 bytes), the
// lengths of the names semprop gives boundaries and priorities, and
// maxExprString for the rest.
func (f *field) maxLen() int {
	switch f.id {
	case fieldType:
		return 255
	case fieldID_, fieldBoundary, fieldBoundaries, fieldPriority:
		return 128
	}
	return maxExprString
}

// bytesPerStep is how many bytes of string work one step stands for.
const bytesPerStep = 16

// bound is an upper bound on a value an expression computes: for a
// string its length in bytes, for an array or map its number of elements
// (elem bounds each element), 1 for scalars.
type bound struct {
	size float64
	elem *bound
}

var (
	scalar = &bound{size: 1}
	// envString bounds a string attribute of the event.
	envString = &bound{size: float64(maxExprString)}
)

// weight bounds the bytes a value holds, for the cost of copying or
// comparing it; an element of an array or map counts 16 bytes besides
// its own weight.
func (b *bound) weight() float64 {
	if b == nil {
		return 1
	}
	if b.elem == nil {
		return b.size
	}
	return b.size * (16 + b.elem.weight())
}

func (b *bound) element() *bound {
	if b == nil || b.elem == nil {
		return envString // a string's character, or unknown: a safe bound
	}
	return b.elem
}

func maxBound(a, b *bound) *bound {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	out := &bound{size: math.Max(a.size, b.size)}
	if a.elem != nil || b.elem != nil {
		out.elem = maxBound(a.elem, b.elem)
	}
	return out
}

// bytesCost is the cost of reading n bytes.
func bytesCost(n float64) float64 { return 1 + n/bytesPerStep }

// allocCost is the cost of building a string of n bytes (allocation and
// garbage collection included).
func allocCost(n float64) float64 { return 1 + n/4 }

// arrayCost is the cost of building an array of n elements.
func arrayCost(n float64) float64 { return 1 + 4*n }

// iterCost is the VM's overhead for one iteration of a closure.
const iterCost = 3

// zoneCost is the cost of loading a time zone (file system access).
const zoneCost = 2000

// ErrExprCost is wrapped by the error Expr returns for an expression
// that may cost more than MaxExprCost per evaluation or uses a construct
// whose cost cannot be bounded.
var ErrExprCost = fmt.Errorf("expression too expensive for a filter: %w", ErrExpr)

// costModel computes an upper bound on the work of evaluating a checked,
// unoptimised expression tree, and refuses constructs it cannot bound.
type costModel struct {
	src      string
	vars     []scopeVar // let bindings in scope, innermost last
	pointers []*bound   // the element "#" of the enclosing closures, innermost last
	err      error
}

type scopeVar struct {
	name string
	b    *bound
}

// exprCost returns the worst-case cost of node in steps, or an error
// wrapping ErrExprCost that says which construct is refused.
func exprCost(src string, node ast.Node) (float64, error) {
	m := &costModel{src: src}
	c, _ := m.eval(node)
	if m.err != nil {
		return 0, m.err
	}
	return c, nil
}

func (m *costModel) refuse(n ast.Node, format string, args ...any) (float64, *bound) {
	if m.err == nil {
		loc := n.Location()
		what := fmt.Sprintf(format, args...)
		if r := []rune(m.src); loc.From >= 0 && loc.From < loc.To && loc.To <= len(r) {
			what += fmt.Sprintf(" in %q", string(r[loc.From:loc.To]))
		}
		m.err = fmt.Errorf("offset %d: cannot bound %s: %w", loc.From, what, ErrExprCost)
	}
	return 0, scalar
}

// isString reports whether n's static type is string.
func isString(n ast.Node) bool {
	t := n.Type()
	return t != nil && t.Kind() == reflect.String
}

// eval returns the cost of evaluating n and a bound on its value.
func (m *costModel) eval(n ast.Node) (float64, *bound) {
	if m.err != nil {
		return 0, scalar
	}
	switch n := n.(type) {
	case *ast.NilNode, *ast.BoolNode, *ast.IntegerNode, *ast.FloatNode:
		return 1, scalar
	case *ast.StringNode:
		return 1, &bound{size: float64(len(n.Value))}
	case *ast.BytesNode:
		return 1, &bound{size: float64(len(n.Value))}
	case *ast.ConstantNode:
		return 1, constBound(reflect.ValueOf(n.Value))
	case *ast.IdentifierNode:
		return m.ident(n)
	case *ast.PointerNode:
		if len(m.pointers) == 0 {
			return m.refuse(n, "%q outside a closure", "#"+n.Name)
		}
		switch n.Name {
		case "":
			return 1, m.pointers[len(m.pointers)-1]
		case "index":
			return 1, scalar
		}
		return m.refuse(n, "pointer %q", "#"+n.Name)
	case *ast.ChainNode:
		return m.eval(n.Node)
	case *ast.UnaryNode:
		c, _ := m.eval(n.Node)
		return c + 1, scalar
	case *ast.BinaryNode:
		return m.binary(n)
	case *ast.MemberNode:
		c, b := m.eval(n.Node)
		pc, _ := m.eval(n.Property)
		if isString(n.Node) {
			return c + pc + 1, &bound{size: 4} // one rune
		}
		return c + pc + 1, b.element()
	case *ast.SliceNode:
		c, b := m.eval(n.Node)
		if n.From != nil {
			fc, _ := m.eval(n.From)
			c += fc
		}
		if n.To != nil {
			tc, _ := m.eval(n.To)
			c += tc
		}
		// Slicing shares the underlying bytes or elements.
		return c + 1, b
	case *ast.ConditionalNode:
		cc, _ := m.eval(n.Cond)
		c1, b1 := m.eval(n.Exp1)
		c2, b2 := m.eval(n.Exp2)
		return cc + math.Max(c1, c2) + 1, maxBound(b1, b2)
	case *ast.VariableDeclaratorNode:
		vc, vb := m.eval(n.Value)
		m.vars = append(m.vars, scopeVar{n.Name, vb})
		ec, eb := m.eval(n.Expr)
		m.vars = m.vars[:len(m.vars)-1]
		return vc + ec + 1, eb
	case *ast.SequenceNode:
		var c float64
		b := scalar
		for _, s := range n.Nodes {
			sc, sb := m.eval(s)
			c += sc
			b = sb
		}
		return c, b
	case *ast.ArrayNode:
		var c float64
		var elem *bound
		for _, e := range n.Nodes {
			ec, eb := m.eval(e)
			c += ec
			elem = maxBound(elem, eb)
		}
		if elem == nil {
			elem = scalar
		}
		return c + arrayCost(float64(len(n.Nodes))), &bound{size: float64(len(n.Nodes)), elem: elem}
	case *ast.MapNode:
		var c float64
		var elem *bound
		for _, p := range n.Pairs {
			pair, ok := p.(*ast.PairNode)
			if !ok {
				return m.refuse(p, "map entry %T", p)
			}
			kc, kb := m.eval(pair.Key)
			vc, vb := m.eval(pair.Value)
			c += kc + vc + bytesCost(kb.weight())
			elem = maxBound(elem, vb)
		}
		if elem == nil {
			elem = scalar
		}
		return c + 1, &bound{size: float64(len(n.Pairs)), elem: elem}
	case *ast.BuiltinNode:
		return m.builtin(n)
	case *ast.CallNode:
		return m.refuse(n, "function calls")
	}
	return m.refuse(n, "construct %T", n)
}

// constBound bounds a constant value.
func constBound(v reflect.Value) *bound {
	switch v.Kind() {
	case reflect.String:
		return &bound{size: float64(v.Len())}
	case reflect.Slice, reflect.Array:
		var elem *bound
		for i := range v.Len() {
			elem = maxBound(elem, constBound(v.Index(i)))
		}
		if elem == nil {
			elem = scalar
		}
		return &bound{size: float64(v.Len()), elem: elem}
	case reflect.Map:
		var elem *bound
		for _, k := range v.MapKeys() {
			elem = maxBound(elem, maxBound(constBound(k), constBound(v.MapIndex(k))))
		}
		if elem == nil {
			elem = scalar
		}
		return &bound{size: float64(v.Len()), elem: elem}
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return scalar
		}
		return constBound(v.Elem())
	}
	return scalar
}

func (m *costModel) ident(n *ast.IdentifierNode) (float64, *bound) {
	for i := len(m.vars) - 1; i >= 0; i-- {
		if m.vars[i].name == n.Value {
			return 1, m.vars[i].b
		}
	}
	if n.Value == "attrs" {
		return 1, &bound{size: float64(maxExprAttrs), elem: envString}
	}
	if f, ok := builtins[n.Value]; ok {
		if f.numeric() {
			return 1, scalar
		}
		return 1, &bound{size: float64(f.maxLen())}
	}
	return m.refuse(n, "name %s", n.Value)
}

func (m *costModel) binary(n *ast.BinaryNode) (float64, *bound) {
	if n.Operator == ".." {
		lo, ok1 := intConst(n.Left)
		hi, ok2 := intConst(n.Right)
		if !ok1 || !ok2 {
			return m.refuse(n, "a range whose bounds are not integer constants")
		}
		size := math.Max(0, float64(hi)-float64(lo)+1)
		return 1 + 2*size, &bound{size: size, elem: scalar}
	}
	lc, lb := m.eval(n.Left)
	rc, rb := m.eval(n.Right)
	c := lc + rc + 1
	switch n.Operator {
	case "+":
		if isString(n.Left) || isString(n.Right) {
			out := &bound{size: lb.size + rb.size}
			return c + allocCost(out.size), out
		}
		if lb.elem != nil || rb.elem != nil {
			return m.refuse(n, "%q on arrays", n.Operator)
		}
		return c, scalar
	case "-", "*", "/", "%", "**", "^", "&&", "and", "||", "or", "??":
		if n.Operator == "??" {
			return c, maxBound(lb, rb)
		}
		return c, scalar
	case "==", "!=", "<", ">", "<=", ">=", "startsWith", "endsWith":
		// A comparison stops at the end of the shorter operand; arrays
		// and maps compare element by element.
		c += bytesCost(math.Min(lb.weight(), rb.weight()))
		if lb.elem != nil && rb.elem != nil {
			c += 4 * math.Min(lb.size, rb.size)
		}
		return c, scalar
	case "contains":
		return c + bytesCost(lb.weight()+rb.weight()), scalar
	case "in", "not in":
		// Membership compares the value with every element of an array,
		// or hashes it for a map.
		if t := n.Right.Type(); t != nil && t.Kind() == reflect.Map {
			return c + bytesCost(lb.weight()), scalar
		}
		return c + rb.size*bytesCost(math.Min(lb.weight(), rb.element().weight())), scalar
	case "matches", "not matches":
		// RE2: compiling is linear in the pattern, matching in pattern ×
		// subject.
		return c + bytesCost(rb.weight()) + bytesCost((rb.weight()+1)*(lb.weight()+1)), scalar
	}
	return m.refuse(n, "operator %q", n.Operator)
}

// intConst returns the value of an integer literal, possibly negated.
func intConst(n ast.Node) (int, bool) {
	switch n := n.(type) {
	case *ast.IntegerNode:
		return n.Value, true
	case *ast.UnaryNode:
		if n.Operator == "-" {
			v, ok := intConst(n.Node)
			return -v, ok
		}
	case *ast.ConstantNode:
		v, ok := n.Value.(int)
		return v, ok
	}
	return 0, false
}

// closureBuiltins iterate over their first argument with a predicate.
var closureBuiltins = map[string]bool{
	"all": true, "none": true, "any": true, "one": true, "filter": true, "map": true,
	"find": true, "findIndex": true, "findLast": true, "findLastIndex": true, "count": true, "sum": true,
}

func (m *costModel) builtin(n *ast.BuiltinNode) (float64, *bound) {
	if closureBuiltins[n.Name] && len(n.Arguments) == 2 {
		cc, coll := m.eval(n.Arguments[0])
		pred, ok := n.Arguments[1].(*ast.PredicateNode)
		if !ok {
			return m.refuse(n, "%s without a closure", n.Name)
		}
		if coll.elem == nil {
			return m.refuse(n, "%s over a value that is not an array", n.Name)
		}
		m.pointers = append(m.pointers, coll.elem)
		bc, bb := m.eval(pred.Node)
		m.pointers = m.pointers[:len(m.pointers)-1]
		c := cc + 1 + coll.size*(bc+iterCost)
		switch n.Name {
		case "map":
			return c + arrayCost(coll.size), &bound{size: coll.size, elem: bb}
		case "filter":
			return c + arrayCost(coll.size), coll
		case "find", "findLast":
			return c, coll.elem
		}
		return c, scalar
	}
	var c float64
	args := make([]*bound, len(n.Arguments))
	for i, a := range n.Arguments {
		ac, ab := m.eval(a)
		c += ac
		args[i] = ab
	}
	c++
	arg := func(i int) *bound {
		if i < len(args) {
			return args[i]
		}
		return scalar
	}
	switch n.Name {
	case "timezone":
		// Loads the zone from the system's time zone database.
		return c + zoneCost + bytesCost(arg(0).weight()), scalar
	case "len", "type", "abs", "ceil", "floor", "round", "now",
		"bitnot", "bitand", "bitor", "bitxor", "bitnand", "bitshl", "bitshr", "bitushr":
		return c, scalar
	case "int", "float", "duration", "date":
		// Parsing a string argument is linear in it; date's third
		// argument is a time zone to load.
		for _, a := range args {
			c += bytesCost(a.weight())
		}
		if n.Name == "date" && len(args) > 2 {
			c += zoneCost
		}
		return c, scalar
	case "string":
		if len(n.Arguments) == 1 {
			if t := n.Arguments[0].Type(); t != nil {
				switch t.Kind() {
				case reflect.String:
					return c, arg(0)
				case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
					reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
					reflect.Float32, reflect.Float64:
					return c + allocCost(32), &bound{size: 32}
				}
			}
		}
		return m.refuse(n, "string() of a value that is not a string, number or bool")
	case "trim":
		// A cutset that is not ASCII is searched for every byte trimmed.
		return c + bytesCost((arg(0).weight()+1)*(arg(1).weight()+1)), arg(0)
	case "trimPrefix", "trimSuffix":
		return c + bytesCost(arg(0).weight()+arg(1).weight()), arg(0)
	case "upper", "lower":
		// Case mapping can lengthen a UTF-8 string by half.
		out := &bound{size: arg(0).size * 1.5}
		return c + 4*bytesCost(out.size) + allocCost(out.size), out
	case "indexOf", "lastIndexOf", "hasPrefix", "hasSuffix":
		return c + bytesCost(arg(0).weight()+arg(1).weight()), scalar
	case "split", "splitAfter":
		s := arg(0)
		out := &bound{size: s.size + 1, elem: s}
		return c + bytesCost(s.size+arg(1).size) + arrayCost(out.size), out
	case "replace":
		// At most one copy of new per byte of s (old = "") and s itself.
		s, repl := arg(0), arg(2)
		out := &bound{size: s.size + (s.size+1)*repl.size}
		return c + bytesCost(s.size+arg(1).size) + allocCost(out.size), out
	case "join":
		a := arg(0)
		if a.elem == nil {
			return m.refuse(n, "join of a value that is not an array")
		}
		out := &bound{size: a.size * (a.elem.weight() + arg(1).size)}
		return c + arrayCost(a.size) + allocCost(out.size), out
	case "max", "min", "mean", "median", "sum":
		for _, a := range args {
			if a.elem != nil {
				c += a.size * bytesCost(a.elem.weight())
				if n.Name == "median" { // sorts a copy
					c += arrayCost(a.size) + a.size*math.Log2(a.size+2)*4
				}
			}
		}
		return c, scalar
	case "count":
		return c + arg(0).size, scalar
	case "first", "last", "get":
		return c + 1, arg(0).element()
	case "take":
		return c + arrayCost(arg(0).size), arg(0)
	case "keys":
		a := arg(0)
		return c + arrayCost(a.size), &bound{size: a.size, elem: envString}
	case "values":
		a := arg(0)
		return c + arrayCost(a.size), &bound{size: a.size, elem: a.element()}
	case "reverse":
		return c + arrayCost(arg(0).size), arg(0)
	}
	return m.refuse(n, "builtin %s (filters may use %s)", n.Name, allowedBuiltins)
}

// allowedBuiltin lists the builtins filters may use; the others (repeat,
// reduce, sort, sortBy, groupBy, toJSON, fromJSON, concat, flatten, uniq,
// toPairs, fromPairs, toBase64, fromBase64) can build values the cost
// model does not bound.
var allowedBuiltin = func() map[string]bool {
	m := map[string]bool{}
	for _, name := range []string{
		"all", "none", "any", "one", "filter", "map", "find", "findIndex", "findLast", "findLastIndex",
		"count", "sum", "len", "type", "abs", "ceil", "floor", "round", "int", "float", "string",
		"trim", "trimPrefix", "trimSuffix", "upper", "lower", "split", "splitAfter", "replace", "join",
		"indexOf", "lastIndexOf", "hasPrefix", "hasSuffix", "max", "min", "mean", "median",
		"now", "duration", "date", "timezone", "first", "last", "get", "take", "keys", "values", "reverse",
		"bitnot", "bitand", "bitor", "bitxor", "bitnand", "bitshl", "bitshr", "bitushr",
	} {
		m[name] = true
	}
	return m
}()

// allowedBuiltins lists allowedBuiltin for error messages.
var allowedBuiltins = func() string {
	names := make([]string, 0, len(allowedBuiltin))
	for name := range allowedBuiltin {
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}()

// maxClosureNesting bounds how deeply closures nest in an expression.
const maxClosureNesting = 4

// maxCheckWork bounds, along every path of the parsed tree, the product
// of the number of signatures of the builtins on the path. expr's type
// checker tries the signatures of an overloaded builtin one after the
// other, checking the arguments again each time: replace (2 signatures)
// nested 20 deep took 1.6 s to compile, sort (9) would take far longer.
const maxCheckWork = 256

// signatures counts the signatures the type checker may try per builtin.
var signatures = func() map[string]int {
	m := map[string]int{}
	for _, f := range builtin.Builtins {
		m[f.Name] = max(1, len(f.Types))
	}
	return m
}()

// checkShape refuses, on the parsed tree and before the type checker
// runs, builtins filters may not use, function calls, closures nested
// more than maxClosureNesting deep and nesting of overloaded builtins
// beyond maxCheckWork.
func checkShape(n ast.Node, work, closures int) error {
	if n == nil {
		return nil
	}
	at := func(format string, args ...any) error {
		return fmt.Errorf("offset %d: %s: %w", n.Location().From, fmt.Sprintf(format, args...), ErrExprCost)
	}
	switch n := n.(type) {
	case *ast.PredicateNode:
		closures++
		if closures > maxClosureNesting {
			return at("closures nested more than %d deep", maxClosureNesting)
		}
	case *ast.BuiltinNode:
		if !allowedBuiltin[n.Name] {
			return at("builtin %s (filters may use %s)", n.Name, allowedBuiltins)
		}
		work *= signatures[n.Name]
		if work > maxCheckWork {
			return at("builtins with several signatures (%s, …) nested too deep", n.Name)
		}
	case *ast.CallNode:
		return at("function calls")
	}
	for _, c := range children(n) {
		if err := checkShape(c, work, closures); err != nil {
			return err
		}
	}
	return nil
}

// children lists the direct children of an expression node.
func children(n ast.Node) []ast.Node {
	switch n := n.(type) {
	case *ast.UnaryNode:
		return []ast.Node{n.Node}
	case *ast.BinaryNode:
		return []ast.Node{n.Left, n.Right}
	case *ast.ChainNode:
		return []ast.Node{n.Node}
	case *ast.MemberNode:
		return []ast.Node{n.Node, n.Property}
	case *ast.SliceNode:
		return []ast.Node{n.Node, n.From, n.To}
	case *ast.CallNode:
		return append([]ast.Node{n.Callee}, n.Arguments...)
	case *ast.BuiltinNode:
		return append(append([]ast.Node(nil), n.Arguments...), n.Map)
	case *ast.PredicateNode:
		return []ast.Node{n.Node}
	case *ast.ConditionalNode:
		return []ast.Node{n.Cond, n.Exp1, n.Exp2}
	case *ast.VariableDeclaratorNode:
		return []ast.Node{n.Value, n.Expr}
	case *ast.SequenceNode:
		return n.Nodes
	case *ast.ArrayNode:
		return n.Nodes
	case *ast.MapNode:
		return n.Pairs
	case *ast.PairNode:
		return []ast.Node{n.Key, n.Value}
	}
	return nil
}
