package filter

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzCompile feeds arbitrary JSON to Compile: it must reject or build a
// filter that matches without panicking.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		`{"exact":{"type":"fs.write"}}`,
		`{"all":[{"prefix":{"type":"fs."}},{"not":{"exact":{"comm":"rsync"}}},{"range":{"size":{"min":1}}}]}`,
		`{"any":[{"glob":{"subject":"/data/**/*.md"}},{"suffix":{"pid":"42"}}]}`,
		`{"deny":["**/.ssh/**","**/*.key"]}`,
		`{"expr":"size > 0 && type startsWith \"fs.\""}`,
		`{"range":{"size":{"min":5,"max":1}}}`,
	} {
		f.Add([]byte(s))
	}
	evs := sampleEvents(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Spec
		if json.Unmarshal(data, &s) != nil {
			return
		}
		flt, err := Compile(s)
		if err != nil {
			return
		}
		for _, ev := range evs {
			flt.Match(ev)
		}
	})
}

// exprBound is the wall-clock bound per fuzz input of compiling and
// evaluating an expression: far above what MaxExprCost allows, far below
// what unbounded loops took.
const exprBound = 2 * time.Second

// FuzzExpr checks that an expression either fails to compile or gives the
// same answer lowered to native predicates as on the expr VM, and that
// compiling and evaluating it, on the worst event too, is bounded in time.
func FuzzExpr(f *testing.F) {
	for _, s := range []string{
		`type == "fs.write"`, `size > 0 && comm != "rsync"`, `uid in [0, 1000] || !(path startsWith "/data")`,
		`priority == "critical"`, `0 >= size`, `type in ["fs.write","fs.create"] and not (gid == 5)`,
		`any(split(path, "/"), {# == ".git"})`, `let x = 1..99; any(x, {any(x, {# < 0})})`,
		`len(join(map(1..50, path), "")) > 0`,
	} {
		f.Add(s)
	}
	evs := append(sampleEvents(f), worstEvent())
	f.Fuzz(func(t *testing.T, src string) {
		start := time.Now()
		low, err := Expr(src)
		if d := time.Since(start); d > exprBound {
			t.Errorf("Expr(%q) took %v to compile", src, d)
		}
		if err != nil {
			return
		}
		vmf, err := Expr(src, NoLowering())
		if err != nil {
			t.Fatalf("Expr(%q) compiles lowered but not on the VM: %v", src, err)
		}
		for _, ev := range evs {
			start := time.Now()
			got, want := low.Match(ev), vmf.Match(ev)
			if d := time.Since(start); d > exprBound {
				t.Errorf("Expr(%q).Match(%.20s…) took %v", src, ev.Subject, d)
			}
			if got != want {
				t.Errorf("Expr(%q).Match(%.20s…): lowered %v, VM %v", src, ev.Subject, got, want)
			}
		}
	})
}
