package filter

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"

	"github.com/semprop/semprop/event"
)

// MaxExprNodes bounds the size of an expression (its syntax tree).
const MaxExprNodes = 500

// MaxExprLen bounds the length of an expression's source in bytes (the
// parser recurses once per parenthesis).
const MaxExprLen = 16 << 10

// Env is what an expression sees: the event's attributes by their
// CloudEvents names. Absent numeric context fields read as -1 and absent
// strings as "", so `uid == 0` is false when the uid is unknown. Extension
// attributes are in attrs (`attrs["tenant"] == "a"`).
type Env struct {
	ID              string            `expr:"id"`
	Type            string            `expr:"type"`
	Source          string            `expr:"source"`
	Subject         string            `expr:"subject"`
	Path            string            `expr:"path"`
	Seq             int               `expr:"seq"`
	Boundary        string            `expr:"boundary"`
	Boundaries      string            `expr:"boundaries"`
	Priority        string            `expr:"priority"`
	PID             int               `expr:"pid"`
	TID             int               `expr:"tid"`
	UID             int               `expr:"uid"`
	GID             int               `expr:"gid"`
	Comm            string            `expr:"comm"`
	Exe             string            `expr:"exe"`
	Inode           int               `expr:"inode"`
	Size            int               `expr:"size"`
	Bytes           int               `expr:"bytes"`
	Offset          int               `expr:"offset"`
	Length          int               `expr:"length"`
	Mode            int               `expr:"mode"`
	OldPath         string            `expr:"oldpath"`
	Target          string            `expr:"target"`
	DataContentType string            `expr:"datacontenttype"`
	Attrs           map[string]string `expr:"attrs"`
}

var numFields = []struct {
	*field
	dst func(*Env) *int
}{
	{builtins["seq"], func(e *Env) *int { return &e.Seq }},
	{builtins["pid"], func(e *Env) *int { return &e.PID }},
	{builtins["tid"], func(e *Env) *int { return &e.TID }},
	{builtins["uid"], func(e *Env) *int { return &e.UID }},
	{builtins["gid"], func(e *Env) *int { return &e.GID }},
	{builtins["inode"], func(e *Env) *int { return &e.Inode }},
	{builtins["size"], func(e *Env) *int { return &e.Size }},
	{builtins["bytes"], func(e *Env) *int { return &e.Bytes }},
	{builtins["offset"], func(e *Env) *int { return &e.Offset }},
	{builtins["length"], func(e *Env) *int { return &e.Length }},
	{builtins["mode"], func(e *Env) *int { return &e.Mode }},
}

// exprFilter runs a compiled expr program on the expr VM.
type exprFilter struct {
	src       string
	prog      *vm.Program
	rs        readSet
	wantAttrs bool
	names     []string                   // the attributes the expression reads
	sets      []func(*Env, *event.Event) // fill env with them
	strs      []*field                   // the string fields the expression reads
	pool      sync.Pool                  // of *exprState
}

type exprState struct {
	env Env
	vm  vm.VM
	// vars is the program's environment: each attribute's entry is an
	// interface whose data pointer is the address of its field in env
	// (aliasField), set once, so that filling env is all an evaluation
	// writes and reading an attribute boxes nothing. It holds only the
	// attributes the expression reads: a map of at most 8 short keys is
	// searched without hashing.
	vars map[string]any
}

func newExprState(names []string) *exprState {
	st := new(exprState)
	st.vars = make(map[string]any, len(names))
	ev := reflect.ValueOf(&st.env).Elem()
	for _, f := range envFields {
		if f.kind == reflect.Map || !slices.Contains(names, f.name) {
			continue // attrs: set per evaluation
		}
		st.vars[f.name] = aliasField(f.kind, ev.Field(f.index).Addr().UnsafePointer())
	}
	return st
}

// envSetter returns what sets Env's attribute name from an event (nil
// for attrs and names that are not attributes).
func envSetter(name string) func(*Env, *event.Event) {
	switch name {
	case "type":
		return func(e *Env, ev *event.Event) { e.Type = ev.Type }
	case "source":
		return func(e *Env, ev *event.Event) { e.Source = ev.Source }
	case "subject":
		return func(e *Env, ev *event.Event) { e.Subject = ev.Subject }
	case "path":
		return func(e *Env, ev *event.Event) { e.Path = ev.Subject }
	case "comm":
		return func(e *Env, ev *event.Event) { e.Comm = ev.Context.Comm }
	case "exe":
		return func(e *Env, ev *event.Event) { e.Exe = ev.Context.Exe }
	case "oldpath":
		return func(e *Env, ev *event.Event) { e.OldPath = ev.Context.OldPath }
	case "target":
		return func(e *Env, ev *event.Event) { e.Target = ev.Context.Target }
	case "datacontenttype":
		return func(e *Env, ev *event.Event) { e.DataContentType = ev.DataContentType }
	case "id":
		return func(e *Env, ev *event.Event) {
			e.ID = ""
			if !ev.ID.IsZero() {
				e.ID = ev.ID.String()
			}
		}
	case "boundary":
		return func(e *Env, ev *event.Event) { e.Boundary = ev.Boundary.String() }
	case "boundaries":
		return func(e *Env, ev *event.Event) { e.Boundaries = ev.Boundaries.String() }
	case "priority":
		return func(e *Env, ev *event.Event) { e.Priority = ev.Priority.String() }
	}
	for _, nf := range numFields {
		if nf.name == name {
			return func(e *Env, ev *event.Event) {
				v, ok := nf.numVal(ev)
				if !ok {
					v = -1
				}
				*nf.dst(e) = int(v)
			}
		}
	}
	return nil
}

// envField is one attribute of Env, by its expr name.
type envField struct {
	name  string
	index int
	kind  reflect.Kind
}

// envFields are Env's attributes; envTypes the environment the programs
// are compiled against: the same names with values of the same types.
var envFields, envTypes = func() ([]envField, map[string]any) {
	t := reflect.TypeFor[Env]()
	var fs []envField
	types := make(map[string]any)
	for i := range t.NumField() {
		sf := t.Field(i)
		f := envField{name: sf.Tag.Get("expr"), index: i, kind: sf.Type.Kind()}
		switch f.kind {
		case reflect.String:
			types[f.name] = ""
		case reflect.Int:
			types[f.name] = 0
		case reflect.Map:
			types[f.name] = map[string]string{}
		default:
			panic("filter: Env field " + sf.Name + " of an unexpected kind")
		}
		fs = append(fs, f)
	}
	return fs, types
}()

// eface is the layout of an empty interface.
type eface struct{ typ, data unsafe.Pointer }

var stringType, intType = typeWord(""), typeWord(0)

func typeWord(v any) unsafe.Pointer { return (*eface)(unsafe.Pointer(&v)).typ }

// aliasField returns an interface holding the string or int at p without
// copying it: the interface reads whatever p holds when it is used. The
// exprState that owns p outlives every use (one Run at a time).
func aliasField(k reflect.Kind, p unsafe.Pointer) any {
	var a any
	e := (*eface)(unsafe.Pointer(&a))
	e.data = p
	if k == reflect.String {
		e.typ = stringType
	} else {
		e.typ = intType
	}
	return a
}

var _ Filter = (*exprFilter)(nil)

// ExprOption adjusts how Expr compiles.
type ExprOption func(*exprConfig)

type exprConfig struct{ noLower bool }

// NoLowering makes Expr always run the expr VM, even for shapes it could
// compile to native predicates. It exists for benchmarks and tests that
// compare the two.
func NoLowering() ExprOption { return func(c *exprConfig) { c.noLower = true } }

// Expr compiles an expr-lang expression over Env that must yield a bool,
// e.g. `type == "fs.write" && size > 0 && comm != "rsync"`. It is compiled
// once, limited to MaxExprNodes nodes, and rejected with the line and column
// of the first error.
//
// The worst-case work of one evaluation must stay within MaxExprCost
// steps, computed from the expression as written with every string
// attribute at its maximum length: ranges need integer constants as
// bounds, loops (all, any, filter, map, count, …) multiply the cost of
// their body by the length of what they iterate, and builtins that can
// build unbounded values (repeat, reduce, sortBy, groupBy, toJSON, …) are
// refused. A refused expression fails with an error wrapping
// ErrExprCost, which says why. Expressions made only of comparisons of attributes
// with constants, startsWith/endsWith/in, and/or/not compile to native
// predicates (Kind "expr", no allocation); anything else runs on the VM.
func Expr(src string, opts ...ExprOption) (Filter, error) {
	var cfg exprConfig
	for _, o := range opts {
		o(&cfg)
	}
	compileErr := func(err error) error {
		var fe *file.Error
		if errors.As(err, &fe) {
			return errorf(ErrExpr, "%q: line %d, column %d: %s", src, fe.Line, fe.Column+1, fe.Message)
		}
		return errorf(ErrExpr, "%q: %w", src, err)
	}
	if len(src) > MaxExprLen {
		return nil, errorf(ErrExpr, "expression of %d bytes, more than %d", len(src), MaxExprLen)
	}
	// The type checker can take time exponential in the nesting of
	// builtins: refuse what it must not see on the parsed tree first.
	pc := conf.CreateNew()
	pc.MaxNodes = MaxExprNodes
	tree, err := parser.ParseWithConfig(src, pc)
	if err != nil {
		return nil, compileErr(err)
	}
	if err := checkShape(tree.Node, 1, 0); err != nil {
		return nil, fmt.Errorf("%q: %w", src, err)
	}
	// The cost is bounded on the tree as written, before the optimizer
	// folds constants (which it does at compile time).
	plain, err := expr.Compile(src, expr.Env(Env{}), expr.AsBool(), expr.MaxNodes(MaxExprNodes), expr.Optimize(false))
	if err != nil {
		return nil, compileErr(err)
	}
	cost, err := exprCost(src, plain.Node())
	if err != nil {
		return nil, fmt.Errorf("%q: %w", src, err)
	}
	if !(cost <= MaxExprCost) { // NaN too: a bound that overflowed
		return nil, fmt.Errorf("%q: may take up to %.3g steps per event, more than %d (loops over large ranges or long lists, or nested loops): %w",
			src, cost, MaxExprCost, ErrExprCost)
	}
	prog, err := expr.Compile(src, expr.Env(Env{}), expr.AsBool(), expr.MaxNodes(MaxExprNodes))
	if err != nil {
		return nil, compileErr(err)
	}
	node := prog.Node()
	// The same expression over a map environment runs without reflection
	// (expr's fast map loads); its values alias an exprState's Env.
	fast, err := expr.Compile(src, expr.Env(envTypes), expr.AsBool(), expr.MaxNodes(MaxExprNodes))
	if err != nil {
		return nil, compileErr(err)
	}
	if !cfg.noLower {
		if f, ok := lower(node); ok {
			return &lowered{src: src, Filter: f, match: matchFunc(f)}, nil
		}
	}
	rs, wantAttrs := exprReads(node)
	f := &exprFilter{src: src, prog: fast, rs: rs, wantAttrs: wantAttrs}
	// ($env, the whole environment, is refused by the cost bound.)
	for _, n := range identNames(node) {
		if set := envSetter(n); set != nil && !slices.Contains(f.names, n) {
			f.names = append(f.names, n)
			f.sets = append(f.sets, set)
		}
	}
	for _, fl := range builtins {
		// Ids, boundaries and priorities are names semprop makes, short.
		if rs.fields&fl.bit != 0 && !fl.numeric() && fl.maxLen() >= 255 && !slices.Contains(f.strs, fl) {
			f.strs = append(f.strs, fl)
		}
	}
	return f, nil
}

// evalErrors counts evaluations of every expression filter that failed.
var evalErrors atomic.Uint64

// EvalErrors returns how many evaluations of expression filters have
// failed since the process started: runtime errors (e.g. a bad regular
// expression operand), the VM's memory budget, and events whose strings
// exceed the bounds the cost model assumes (see MaxExprCost). A failed
// evaluation does not match. It is safe for concurrent use.
func EvalErrors() uint64 { return evalErrors.Load() }

// withinBounds reports whether ev stays within the input bounds the cost
// model assumed for f.
func (f *exprFilter) withinBounds(ev *event.Event) bool {
	for _, fl := range f.strs {
		if s, _ := fl.strVal(ev); len(s) > fl.maxLen() {
			return false
		}
	}
	if f.wantAttrs {
		if len(ev.Attrs) > maxExprAttrs {
			return false
		}
		for _, a := range ev.Attrs {
			if len(a.Value) > maxExprString || len(a.Key) > maxExprString {
				return false
			}
		}
	}
	return true
}

func (f *exprFilter) Match(ev *event.Event) bool {
	if !f.withinBounds(ev) {
		evalErrors.Add(1)
		return false
	}
	st, _ := f.pool.Get().(*exprState)
	if st == nil {
		st = newExprState(f.names)
	}
	for _, set := range f.sets {
		set(&st.env, ev)
	}
	if f.wantAttrs {
		st.env.Attrs = nil
		if len(ev.Attrs) > 0 {
			st.env.Attrs = make(map[string]string, len(ev.Attrs))
			for _, a := range ev.Attrs {
				st.env.Attrs[a.Key] = a.Value
			}
		}
		st.vars["attrs"] = st.env.Attrs
	}
	out, err := st.vm.Run(f.prog, st.vars)
	if f.wantAttrs {
		st.env.Attrs = nil
		delete(st.vars, "attrs")
	}
	f.pool.Put(st)
	if err != nil {
		evalErrors.Add(1)
		return false // a runtime error (e.g. a bad regexp operand) rejects
	}
	b, _ := out.(bool)
	return b
}

func (f *exprFilter) Kind() string    { return "expr" }
func (f *exprFilter) Cost() int       { return costExpr }
func (f *exprFilter) Validate() error { return nil }
func (f *exprFilter) String() string  { return "expr(" + f.src + ")" }
func (f *exprFilter) reads() readSet {
	if f.wantAttrs {
		return readSet{unknown: true}
	}
	return f.rs
}

var _ Filter = (*lowered)(nil)

// lowered is an expression compiled to native predicates.
type lowered struct {
	src string
	Filter
	match func(*event.Event) bool
}

func (l *lowered) Match(ev *event.Event) bool { return l.match(ev) }
func (l *lowered) Kind() string               { return "expr" }
func (l *lowered) String() string             { return "expr(" + l.src + ")" }
func (l *lowered) reads() readSet             { return readsOf(l.Filter) }

// exprReads lists the Env fields an expression reads.
func exprReads(node ast.Node) (rs readSet, wantAttrs bool) {
	v := &identVisitor{}
	ast.Walk(&node, v)
	for _, name := range v.names {
		if name == "attrs" {
			wantAttrs = true
			continue
		}
		if f, ok := builtins[name]; ok {
			rs.fields |= f.bit
		}
	}
	return rs, wantAttrs
}

// identNames lists the identifiers an expression names.
func identNames(node ast.Node) []string {
	v := &identVisitor{}
	ast.Walk(&node, v)
	return v.names
}

type identVisitor struct{ names []string }

func (v *identVisitor) Visit(n *ast.Node) {
	if id, ok := (*n).(*ast.IdentifierNode); ok {
		v.names = append(v.names, id.Value)
	}
}

// lower compiles the simple shapes of an expression to native filters.
func lower(node ast.Node) (Filter, bool) {
	switch n := node.(type) {
	case *ast.BoolNode:
		if n.Value {
			return True(), true
		}
		return Not(True()), true
	case *ast.UnaryNode:
		if n.Operator != "!" && n.Operator != "not" {
			return nil, false
		}
		f, ok := lower(n.Node)
		if !ok {
			return nil, false
		}
		return Not(f), true
	case *ast.BinaryNode:
		switch n.Operator {
		case "&&", "and", "||", "or":
			l, ok1 := lower(n.Left)
			r, ok2 := lower(n.Right)
			if !ok1 || !ok2 {
				return nil, false
			}
			if n.Operator == "&&" || n.Operator == "and" {
				if m, ok := mergeSpans(l, r); ok {
					return m, true
				}
				return All(l, r), true
			}
			return Any(l, r), true
		}
		return lowerCompare(n)
	}
	return nil, false
}

// lowerCompare lowers `ident OP constant` (or `constant OP ident`).
func lowerCompare(n *ast.BinaryNode) (Filter, bool) {
	op := n.Operator
	id, okL := n.Left.(*ast.IdentifierNode)
	lit := n.Right
	if !okL {
		id2, okR := n.Right.(*ast.IdentifierNode)
		if !okR {
			return nil, false
		}
		flip := map[string]string{"==": "==", "!=": "!=", "<": ">", ">": "<", "<=": ">=", ">=": "<="}
		if flip[op] == "" {
			return nil, false
		}
		id, lit, op = id2, n.Left, flip[op]
	}
	name := id.Value
	f, ok := builtins[name]
	if !ok {
		return nil, false
	}
	switch v := lit.(type) {
	case *ast.IntegerNode:
		if !f.numeric() {
			return nil, false
		}
		return numCompare(name, f, op, int64(v.Value))
	case *ast.StringNode:
		if f.numeric() || name == "id" {
			return nil, false
		}
		return strCompare(name, op, v.Value)
	case *ast.ArrayNode:
		return lowerIn(name, f, op, v)
	case *ast.ConstantNode:
		if op != "in" {
			return nil, false
		}
		return lowerInValues(name, f, constValues(v.Value))
	}
	return nil, false
}

// numCompare compares a numeric field (absent reads as -1, as in Env).
func numCompare(name string, f *field, op string, c int64) (Filter, bool) {
	get := func(ev *event.Event) int64 {
		if v, ok := f.numVal(ev); ok {
			return v
		}
		return -1
	}
	n := &native{kind: "range", desc: fmt.Sprintf("%s %s %d", name, op, c), cost: costCompare, rs: f.reads()}
	const minInt, maxInt = -1 << 63, 1<<63 - 1
	switch op {
	case "==":
		n.kind, n.match = "exact", func(ev *event.Event) bool { return get(ev) == c }
		n.span = &span{f, c, c}
	case "!=":
		n.kind, n.match = "not", func(ev *event.Event) bool { return get(ev) != c }
	case "<":
		if c == minInt {
			return nil, false
		}
		n.match = func(ev *event.Event) bool { return get(ev) < c }
		n.span = &span{f, minInt, c - 1}
	case "<=":
		n.match = func(ev *event.Event) bool { return get(ev) <= c }
		n.span = &span{f, minInt, c}
	case ">":
		if c == maxInt {
			return nil, false
		}
		n.match = func(ev *event.Event) bool { return get(ev) > c }
		n.span = &span{f, c + 1, maxInt}
	case ">=":
		n.match = func(ev *event.Event) bool { return get(ev) >= c }
		n.span = &span{f, c, maxInt}
	default:
		return nil, false
	}
	return n, true
}

// mergeSpans merges two comparisons of one numeric field joined by "and"
// into one range check.
func mergeSpans(a, b Filter) (Filter, bool) {
	na, ok1 := a.(*native)
	nb, ok2 := b.(*native)
	if !ok1 || !ok2 || na.span == nil || nb.span == nil || na.span.f != nb.span.f {
		return nil, false
	}
	f := na.span.f
	lo, hi := max(na.span.lo, nb.span.lo), min(na.span.hi, nb.span.hi)
	n := &native{kind: "range", desc: na.desc + " && " + nb.desc, cost: costCompare, rs: f.reads(),
		span: &span{f, lo, hi}}
	n.match = func(ev *event.Event) bool {
		v, ok := f.numVal(ev)
		if !ok {
			v = -1
		}
		return v >= lo && v <= hi
	}
	return n, true
}

// strCompare compares a string field that is "" when absent, as in Env.
func strCompare(name, op, c string) (Filter, bool) {
	var f Filter
	var err error
	switch op {
	case "==", "!=":
		if c == "" {
			return nil, false
		}
		f, err = Exact(name, c)
		if op == "!=" && err == nil {
			f = Not(f)
		}
	case "startsWith":
		if c == "" {
			return True(), true
		}
		f, err = Prefix(name, c)
	case "endsWith":
		if c == "" {
			return True(), true
		}
		f, err = Suffix(name, c)
	default:
		return nil, false
	}
	return f, err == nil
}

func lowerIn(name string, f *field, op string, arr *ast.ArrayNode) (Filter, bool) {
	if op != "in" {
		return nil, false
	}
	vals := make([]any, len(arr.Nodes))
	for i, n := range arr.Nodes {
		switch v := n.(type) {
		case *ast.IntegerNode:
			vals[i] = v.Value
		case *ast.StringNode:
			vals[i] = v.Value
		default:
			return nil, false
		}
	}
	return lowerInValues(name, f, vals)
}

// constValues lists the elements of a constant slice, or the keys of a
// constant set (the optimizer turns `x in [...]` into a set).
func constValues(c any) []any {
	rv := reflect.ValueOf(c)
	var out []any
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		for i := range rv.Len() {
			out = append(out, rv.Index(i).Interface())
		}
	case reflect.Map:
		for _, k := range rv.MapKeys() {
			out = append(out, k.Interface())
		}
		slices.SortFunc(out, func(a, b any) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	}
	return out
}

func lowerInValues(name string, f *field, vals []any) (Filter, bool) {
	var fs []Filter
	for _, v := range vals {
		var sub Filter
		var ok bool
		switch v := v.(type) {
		case int:
			if !f.numeric() {
				return nil, false
			}
			sub, ok = numCompare(name, f, "==", int64(v))
		case string:
			if f.numeric() || name == "id" {
				return nil, false
			}
			sub, ok = strCompare(name, "==", v)
		}
		if !ok {
			return nil, false
		}
		fs = append(fs, sub)
	}
	if len(fs) == 0 {
		return nil, false
	}
	return Any(fs...), true
}
