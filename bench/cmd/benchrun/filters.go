package main

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/filter"
)

// The same three filters as internal/filter's benchmarks, in each dialect.
var benchFilters = []struct{ name, spec, expr, cel string }{
	{"exact", `{"exact":{"type":"fs.write"}}`, `type == "fs.write"`, `type == "fs.write"`},
	{"range", `{"range":{"size":{"min":1,"max":1048576}}}`, `size >= 1 && size <= 1048576`, `size >= 1 && size <= 1048576`},
	{"composite", `{"all":[{"prefix":{"type":"fs."}},{"not":{"exact":{"comm":"rsync"}}},{"exact":{"uid":"1000"}}]}`,
		`type startsWith "fs." && comm != "rsync" && uid == 1000`, `type.startsWith("fs.") && comm != "rsync" && uid == 1000`},
}

// evActivation resolves CEL variables straight from an event (no map).
type evActivation struct{ ev *event.Event }

func (a *evActivation) ResolveName(n string) (any, bool) {
	switch n {
	case "type":
		return a.ev.Type, true
	case "size":
		return a.ev.Context.Size, true
	case "comm":
		return a.ev.Context.Comm, true
	case "uid":
		return int64(a.ev.Context.UID), true
	}
	return nil, false
}

func (a *evActivation) Parent() interpreter.Activation { return nil }

type celFilter struct {
	prg cel.Program
	act *evActivation
}

func (f *celFilter) Match(ev *event.Event) bool {
	f.act.ev = ev
	out, _, err := f.prg.Eval(f.act)
	return err == nil && out == types.True
}

func newCEL(src string) (*celFilter, error) {
	env, err := cel.NewEnv(
		cel.Variable("type", cel.StringType), cel.Variable("size", cel.IntType),
		cel.Variable("comm", cel.StringType), cel.Variable("uid", cel.IntType))
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	return &celFilter{prg: prg, act: &evActivation{}}, nil
}

type matcher interface{ Match(*event.Event) bool }

// benchTime is how long one filter measurement runs.
var benchTime = time.Second

// nsPerOp times m.Match(ev) in a loop grown until it runs benchTime, and
// returns ns per evaluation and allocations per evaluation.
func nsPerOp(m matcher, ev *event.Event, want bool) (float64, int64, error) {
	if m.Match(ev) != want {
		return 0, 0, fmt.Errorf("filter gives %v, want %v", !want, want)
	}
	allocs := int64(testing.AllocsPerRun(1000, func() { m.Match(ev) }))
	n := 1000
	for {
		start := time.Now()
		for range n {
			m.Match(ev)
		}
		el := time.Since(start)
		if el >= benchTime || n >= 1e9 {
			return float64(el.Nanoseconds()) / float64(n), allocs, nil
		}
		grow := 1.2 * float64(benchTime) / float64(max(el, time.Microsecond))
		n = int(float64(n) * min(max(grow, 2), 100))
	}
}

func rowFilters(ctx context.Context, c *cfg, rep *report) error {
	ev := &event.Event{Type: "fs.write", Subject: "/data/notes/a.md", Boundary: event.BoundaryFUSE}
	ev.Context.SetSize(120)
	ev.Context.SetUID(1000)
	ev.Context.SetGID(1000)
	ev.Context.SetPID(4242)
	ev.Context.Comm = "vim"
	rep.note(6, "one in-process evaluation of a compiled filter against one event (type=fs.write, size=120, uid=1000, comm=vim: every filter matches), timed in a loop grown to run ~1 s (0.1 s with --quick) per measurement; ns per evaluation.")
	rep.note(6, "semprop native = filter.Compile of the CloudEvents-Subscriptions-style spec; semprop expr = filter.Expr (expressions of this shape are lowered to native predicates); semprop expr VM = filter.Expr with NoLowering (expr-lang/expr v1.17.8 VM, environment built from the event per evaluation).")
	rep.note(6, "cel-go: cel.dev/cel-go v0.33.2, checked expression, OptOptimize, variables resolved by a custom Activation reading the event's fields directly (no map per evaluation).")
	allocs := map[string]int64{}
	for _, bf := range benchFilters {
		var s filter.Spec
		if err := json.Unmarshal([]byte(bf.spec), &s); err != nil {
			return err
		}
		native, err := filter.Compile(s)
		if err != nil {
			return err
		}
		lowered, err := filter.Expr(bf.expr)
		if err != nil {
			return err
		}
		vm, err := filter.Expr(bf.expr, filter.NoLowering())
		if err != nil {
			return err
		}
		cf, err := newCEL(bf.cel)
		if err != nil {
			return fmt.Errorf("cel %q: %w", bf.cel, err)
		}
		vars := []struct {
			name string
			m    matcher
			res  *[]float64
		}{{"native", native, new([]float64)}, {"expr", lowered, new([]float64)}, {"expr VM", vm, new([]float64)}, {"cel-go", cf, new([]float64)}}
		for range c.reps {
			for _, v := range vars {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				ns, a, err := nsPerOp(v.m, ev, true)
				if err != nil {
					return fmt.Errorf("%s %s: %w", bf.name, v.name, err)
				}
				*v.res = append(*v.res, ns)
				allocs[bf.name+"/"+v.name] = a
			}
		}
		celNs := *vars[3].res
		for _, v := range vars[:3] {
			rep.add(&line{row: 6, name: bf.name + " (`" + bf.expr + "`)", unit: "ns", better: lower,
				semprop: "semprop " + v.name, peer: "cel-go", s: *v.res, p: celNs})
		}
	}
	rep.note(6, fmt.Sprintf("allocations per evaluation: %v", allocs))
	return nil
}
