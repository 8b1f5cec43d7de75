package filter

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
)

// worstEvent has every string attribute at the length the cost model
// assumes, made of path separators and letters so that splits and
// matches do the most work.
func worstEvent() *event.Event {
	s := strings.Repeat("a/", maxExprString/2)
	ev := &event.Event{Type: "fs.write", Source: s, Subject: s}
	ev.Context.Comm, ev.Context.Exe, ev.Context.OldPath, ev.Context.Target = s, s, s, s
	ev.Context.SetSize(1)
	for i := range maxExprAttrs {
		ev.Attrs = append(ev.Attrs, event.Attr{Key: "k" + strings.Repeat("x", i%10) + string(rune('a'+i%26)), Value: s})
	}
	return ev
}

// TestExprCostRefused: expressions whose work per event is not bounded
// by MaxExprCost are refused when compiled, with an error that says why
// (one of them, a loop over a large range, took 37 s per event).
func TestExprCostRefused(t *testing.T) {
	for _, src := range []string{
		`let x = 1..999; any(x, {any(x, {any(x, {# < 0})})})`,
		`any(1..999, {any(1..999, {any(1..999, {# < 0})})})`,
		`len(filter(1..100000000, # > 0)) > 0`,
		`count(1..size, # > 0) > 0`,
		`any(1..999999, {"a" matches string(#)})`,
		`len(repeat(subject, 1000)) > 0`,
		`reduce(1..999, #acc + #acc, "a") == ""`,
		`len(toJSON(attrs)) > 0`,
		`len(sortBy(split(path, "/"), #)) > 0`,
		`any(split(path, ""), {any(split(path, ""), {# == "x"})})`,
		`len(join(map(split(path, ""), path), "")) > 0`,
		`subject matches subject + subject`,
		`let a = path + path; let b = a + a; let c = b + b; let d = c + c; let e = d + d; let f = e + e; let g = f + f; let h = g + g; let i = h + h; let j = i + i; len(j + j) > 0 && j contains "x"`,
		`timezone(comm) != timezone("UTC") && any(1..90, {timezone(path) == timezone(exe)})`,
		`median(map(1..100000, -#)) > 0`,
		// Closures nested too deep (expr's checker is exponential in it).
		`any(1..2, {any(1..2, {any(1..2, {any(1..2, {any(1..2, {# > 0})})})})})`,
		`len(` + strings.Repeat(`join(map(1..9, `, 40) + `path` + strings.Repeat(`), "")`, 40) + `) == 0`,
		strings.Repeat("(", 100000) + "true" + strings.Repeat(")", 100000),
		`let x = [1..40000, 1..40000]; x == x && x == x && x == x && x == x && x == x`,
		// A bound that overflows to +Inf inside a loop over nothing
		// gives NaN (0 × Inf), which must not pass for cheap.
		`len(map(0..-1, ` + strings.Repeat(`join(map(1..99999, `, 40) + `path` + strings.Repeat(`), "")`, 40) + `)) == 0 && any(1..9999999, {# < 0})`,
	} {
		start := time.Now()
		_, err := Expr(src)
		if !errors.Is(err, ErrExpr) || (!errors.Is(err, ErrExprCost) && len(src) <= MaxExprLen) {
			t.Errorf("Expr(%.100q) error = %.200v, want ErrExprCost", src, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Expr(%.100q) took %v to compile", src, d)
		}
	}
}

// TestExprCostAccepted: the expressions filters are written with stay
// within the budget, and the most expensive accepted ones evaluate fast
// on the worst event.
func TestExprCostAccepted(t *testing.T) {
	ev := worstEvent()
	for _, src := range []string{
		`type == "fs.write" && size > 0 && comm != "rsync"`,
		`any(split(path, "/"), {# == ".git"})`,
		`count(split(path, "/"), {# startsWith "."}) > 2`,
		`path matches "^/data/[^/]+/.*\\.md$"`,
		`lower(comm) in ["vim", "nano"] || exe endsWith "/vim"`,
		`attrs["tenant"] == "a" && len(keys(attrs)) < 10`,
		`let parts = split(path, "/"); len(parts) > 3 && parts[1] == "data"`,
		`any(1..999, {# == size})`,
		`upper(trim(subject)) contains "X" && indexOf(path, "/.") > 0`,
		`all(values(attrs), {len(#) < 100})`,
		`sum(map(split(path, "/"), len(#))) > 10`,
		`string(size) == "1" && int("12") == 12`,
		// Close to the budget.
		`any(1..120, {any(1..120, {# == -1})})`,
		`len(join(map(1..50, path), "")) > 0`,
		`any(1..5000, {string(#) == "x"})`,
		`any(split(path, ""), {# == "x"})`,
	} {
		f, err := Expr(src, NoLowering())
		if err != nil {
			t.Errorf("Expr(%q) = %v, want accepted", src, err)
			continue
		}
		start := time.Now()
		f.Match(ev)
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("Expr(%q).Match(worst event) took %v", src, d)
		}
	}
}

// TestExprOverBoundsInput: an event whose strings exceed the bounds the
// cost model assumed does not match and is counted.
func TestExprOverBoundsInput(t *testing.T) {
	f, err := Expr(`any(split(path, "/"), {# == "x"})`)
	if err != nil {
		t.Fatal(err)
	}
	ok := &event.Event{Type: "fs.write", Subject: "/a/x"}
	if !f.Match(ok) {
		t.Fatalf("Match(/a/x) = false, want true")
	}
	before := EvalErrors()
	long := &event.Event{Type: "fs.write", Subject: strings.Repeat("/a", maxExprString) + "/x"}
	if f.Match(long) {
		t.Errorf("Match(subject of %d bytes) = true, want false (beyond the cost model's bound)", len(long.Subject))
	}
	if got := EvalErrors(); got != before+1 {
		t.Errorf("EvalErrors() = %d, want %d", got, before+1)
	}
	// A runtime error is counted too.
	re, err := Expr(`subject matches type`)
	if err != nil {
		t.Fatal(err)
	}
	before = EvalErrors()
	if re.Match(&event.Event{Subject: "/a", Type: "("}) {
		t.Errorf("Match with a bad regexp operand = true, want false")
	}
	if got := EvalErrors(); got != before+1 {
		t.Errorf("EvalErrors() after a bad regexp = %d, want %d", got, before+1)
	}
}

// TestExprCompileBounded: expr's type checker tries every signature of an
// overloaded builtin, checking its arguments again each time, so nesting
// them took exponential time to compile (replace nested 20 deep: 1.6 s;
// sort, with 9 signatures, far longer). Such nesting is refused before
// the checker runs.
func TestExprCompileBounded(t *testing.T) {
	for _, w := range [][2]string{
		{`replace(`, `, "a", "b")`},
		{`join(split(`, `, "/"), "")`},
		{`trim(`, `)`},
		{`trimPrefix(`, `, "a")`},
		{`join(map(split(`, `, "/"), #), "")`},
		{`join(filter(split(`, `, "/"), true), "")`},
		{`join(sort(split(`, `, "/")), "")`},
		{`string(len(`, `))`}, // one signature each: accepted at any depth
	} {
		overloaded := !strings.HasPrefix(w[0], "string(len(")
		for _, inner := range []string{`path`, `join(map(1..3, path), "")`} {
			for _, d := range []int{4, 8, 30} {
				src := `len(` + strings.Repeat(w[0], d) + inner + strings.Repeat(w[1], d) + `) >= 0`
				start := time.Now()
				_, err := Expr(src)
				if el := time.Since(start); el > time.Second {
					t.Errorf("Expr(%s… depth %d) took %v (err %v)", w[0], d, el, err != nil)
				}
				if d == 30 && overloaded && !errors.Is(err, ErrExprCost) {
					t.Errorf("Expr(%s… depth %d) error = %v, want ErrExprCost", w[0], d, err)
				}
			}
		}
	}
}
