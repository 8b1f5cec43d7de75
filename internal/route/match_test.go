package route

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/filter/datadriven"
)

// parseEvent builds an event from "key=value" words.
func parseEvent(t testing.TB, line string) *event.Event {
	t.Helper()
	ev := &event.Event{}
	for _, kv := range strings.Fields(line) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("bad event word %q", kv)
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "type":
			ev.Type = v
		case "subject":
			ev.Subject = v
		case "size":
			ev.Context.SetSize(n)
		case "uid":
			ev.Context.SetUID(uint32(n))
		case "comm":
			ev.Context.Comm = v
		case "oldpath":
			ev.Context.OldPath = v
		case "priority":
			ev.Priority, _ = event.ParsePriority(v)
		default:
			ev.SetAttr(k, v)
		}
	}
	return ev
}

// naiveMatch is a reference implementation of the NATS pattern semantics.
func naiveMatch(pattern, typ string) bool {
	pt, tt := strings.Split(pattern, "."), strings.Split(typ, ".")
	if slices.Contains(tt, "") {
		return false
	}
	for i, p := range pt {
		if p == ">" {
			return len(tt) > i
		}
		if i >= len(tt) || (p != "*" && p != tt[i]) {
			return false
		}
	}
	return len(pt) == len(tt)
}

// trieMatch reports whether a table with only pattern routes typ to it.
func trieMatch(t testing.TB, pattern, typ string) bool {
	t.Helper()
	r := New[int](Options[int]{})
	if err := r.Add(Route[int]{Name: "p", Selector: Selector{Type: pattern}, Targets: []int{1}}); err != nil {
		t.Fatalf("Add(%q): %v", pattern, err)
	}
	return r.Route(&event.Event{Type: typ}, func(int, *event.Event) error { return nil }) == 1
}

// TestPatterns runs testdata/patterns.txt: "pattern P" then event types,
// one result per type. Each result is checked three ways: Pattern.Match,
// the routing trie, and a naive reference. Regenerate with -update.
func TestPatterns(t *testing.T) {
	datadriven.RunFile(t, "testdata/patterns.txt", func(t *testing.T, c *datadriven.Case) string {
		if c.Cmd != "pattern" {
			t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
		}
		src := strings.Join(c.Args, " ")
		p, err := ParsePattern(src)
		if err != nil {
			return "error: " + err.Error()
		}
		var b strings.Builder
		for _, typ := range c.Input {
			got := p.Match(typ)
			if tm := trieMatch(t, src, typ); tm != got {
				t.Errorf("%s: pattern %q type %q: trie %v, Pattern.Match %v", c.Pos, src, typ, tm, got)
			}
			if nm := naiveMatch(src, typ); nm != got {
				t.Errorf("%s: pattern %q type %q: reference %v, Pattern.Match %v", c.Pos, src, typ, nm, got)
			}
			fmt.Fprintf(&b, "%q %v\n", typ, got)
		}
		return b.String()
	})
}

// TestTable runs testdata/table.txt. Commands:
//
//	routes   input: one route per line, "name | type | path | filter"
//	route    input: one event per line (key=value words); output: the
//	         names of the routes that match it, in routing order
func TestTable(t *testing.T) {
	var r *Router[string]
	datadriven.RunFile(t, "testdata/table.txt", func(t *testing.T, c *datadriven.Case) string {
		switch c.Cmd {
		case "routes":
			var routes []Route[string]
			for _, line := range c.Input {
				parts := strings.Split(line, "|")
				for len(parts) < 4 {
					parts = append(parts, "")
				}
				for i := range parts {
					parts[i] = strings.TrimSpace(parts[i])
				}
				routes = append(routes, Route[string]{Name: parts[0],
					Selector: Selector{Type: parts[1], Path: parts[2], Filter: parts[3]}, Targets: []string{parts[0]}})
			}
			r = New[string](Options[string]{})
			if err := r.Add(routes...); err != nil {
				return "error: " + err.Error()
			}
			return fmt.Sprintf("ok: %d routes", r.Table().Len())
		case "route":
			var b strings.Builder
			for _, line := range c.Input {
				ev := parseEvent(t, line)
				var names []string
				r.Route(ev, func(tgt string, _ *event.Event) error { names = append(names, tgt); return nil })
				var matched []string
				r.Table().Match(ev, func(name string) { matched = append(matched, name) })
				if !slices.Equal(names, matched) {
					t.Errorf("%s: Route delivered to %v, Match found %v", c.Pos, names, matched)
				}
				fmt.Fprintf(&b, "%s -> %s\n", line, strings.Join(names, " "))
			}
			return b.String()
		}
		t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
		return ""
	})
}

func TestParseSelectorErrors(t *testing.T) {
	for _, tc := range []struct {
		typ, path, filter string
		part              string
		cause             error
	}{
		{"fs.>.x", "", "", "type: ", ErrBadPattern},
		{"fs..write", "", "", "type: ", ErrBadPattern},
		{"fs.wr*", "", "", "type: ", ErrBadPattern},
		{"FS write", "", "", "type: ", ErrBadPattern},
		{"fs.>", "/data/[", "", "path: ", nil},
		{"fs.>", "re:(", "", "path: ", nil},
		{"fs.>", "/data/**", "size >", "filter: ", nil},
		{"fs.>", "/data/**", "sise > 0", "filter: ", nil},
	} {
		_, err := ParseSelector(tc.typ, tc.path, tc.filter)
		if !errors.Is(err, ErrBadSelector) || !strings.Contains(fmt.Sprint(err), tc.part) ||
			(tc.cause != nil && !errors.Is(err, tc.cause)) {
			t.Errorf("ParseSelector(%q, %q, %q) error = %v, want ErrBadSelector naming %q", tc.typ, tc.path, tc.filter, err, tc.part)
		}
	}
	s, err := ParseSelector("", "", "")
	if err != nil || !s.Match(&event.Event{Type: "any.thing"}) || s.Match(&event.Event{}) {
		t.Errorf("ParseSelector(\"\", \"\", \"\") = %v, %v; want a selector matching every valid type", s, err)
	}
}

func TestSelectorMatch(t *testing.T) {
	s, err := ParseSelector("fs.>", "/data/**/*.md", "size > 0")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ev   string
		want bool
	}{
		{"type=fs.write subject=/data/a/b.md size=3", true},
		{"type=fs.write subject=/data/a/b.md size=0", false},
		{"type=fs.write subject=/data/a/b.txt size=3", false},
		{"type=vector.insert subject=/data/a/b.md size=3", false},
	} {
		if got := s.Match(parseEvent(t, tc.ev)); got != tc.want {
			t.Errorf("Match(%s) = %v, want %v", tc.ev, got, tc.want)
		}
	}
	ev := parseEvent(t, "type=fs.write subject=/data/a/b.md size=3")
	if a := testing.AllocsPerRun(100, func() { s.Match(ev) }); a != 0 {
		t.Errorf("CompiledSelector.Match allocs = %v, want 0", a)
	}
}

func FuzzParsePattern(f *testing.F) {
	for _, s := range [][2]string{{"fs.*", "fs.write"}, {"fs.>", "fs.a.b"}, {">", "x"}, {"a.*.c", "a.b.c"}, {"fs.>.x", "fs.a.x"}, {"*", "a."}, {"a", "a"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, typ string) {
		p, err := ParsePattern(pattern)
		if err != nil {
			return
		}
		got := p.Match(typ)
		if want := naiveMatch(pattern, typ); got != want {
			t.Errorf("ParsePattern(%q).Match(%q) = %v, want %v", pattern, typ, got, want)
		}
		if tm := trieMatch(t, pattern, typ); tm != got {
			t.Errorf("pattern %q type %q: trie %v, Match %v", pattern, typ, tm, got)
		}
	})
}

func FuzzParseSelector(f *testing.F) {
	f.Add("fs.>", "/data/**/*.md", "size > 0")
	f.Add("*.write", "re:^/x", `comm in ["a"]`)
	f.Add("", "{a,b}/**", "")
	ev := &event.Event{Type: "fs.write", Subject: "/data/a/b.md"}
	f.Fuzz(func(t *testing.T, typ, path, flt string) {
		s, err := ParseSelector(typ, path, flt)
		if err != nil {
			if !errors.Is(err, ErrBadSelector) {
				t.Errorf("ParseSelector error %v does not wrap ErrBadSelector", err)
			}
			return
		}
		s.Match(ev)
	})
}
