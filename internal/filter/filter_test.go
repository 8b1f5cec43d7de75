package filter

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/filter/datadriven"
)

// parseEvent builds an event from "key=value" words (see testdata/filter.txt).
func parseEvent(t testing.TB, line string) *event.Event {
	t.Helper()
	ev := &event.Event{}
	for _, kv := range strings.Fields(line) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("bad event word %q", kv)
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		c := &ev.Context
		switch k {
		case "type":
			ev.Type = v
		case "subject":
			ev.Subject = v
		case "source":
			ev.Source = v
		case "seq":
			ev.Seq = uint64(n)
		case "priority":
			p, ok := event.ParsePriority(v)
			if !ok {
				t.Fatalf("bad priority %q", v)
			}
			ev.Priority = p
		case "boundary":
			b, _ := event.ParseBoundary(v)
			ev.Boundary = b
			ev.Boundaries = ev.Boundaries.Add(b)
		case "boundaries":
			bs, _ := event.ParseBoundaries(v)
			ev.Boundaries = bs
		case "pid":
			c.SetPID(int32(n))
		case "tid":
			c.SetTID(int32(n))
		case "uid":
			c.SetUID(uint32(n))
		case "gid":
			c.SetGID(uint32(n))
		case "comm":
			c.Comm = v
		case "exe":
			c.Exe = v
		case "inode":
			c.SetInode(uint64(n))
		case "size":
			c.SetSize(n)
		case "bytes":
			c.SetBytes(n)
		case "mode":
			c.SetMode(uint32(n))
		case "oldpath":
			c.OldPath = v
		case "target":
			c.Target = v
		case "data":
			ev.Data, ev.DataContentType = []byte(v), "application/json"
		default:
			ev.SetAttr(k, v)
		}
	}
	return ev
}

// describe prints the fields a redactor may change.
func describe(ev *event.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "subject=%s", ev.Subject)
	if ev.Context.OldPath != "" {
		fmt.Fprintf(&b, " oldpath=%s", ev.Context.OldPath)
	}
	if ev.Context.Target != "" {
		fmt.Fprintf(&b, " target=%s", ev.Context.Target)
	}
	if ev.Context.Comm != "" {
		fmt.Fprintf(&b, " comm=%s", ev.Context.Comm)
	}
	if ev.Context.Exe != "" {
		fmt.Fprintf(&b, " exe=%s", ev.Context.Exe)
	}
	if ev.Context.Has(event.HasUID) {
		fmt.Fprintf(&b, " uid=%d", ev.Context.UID)
	}
	if ev.Context.Has(event.HasPID) {
		fmt.Fprintf(&b, " pid=%d", ev.Context.PID)
	}
	if ev.Context.Has(event.HasTID) {
		fmt.Fprintf(&b, " tid=%d", ev.Context.TID)
	}
	for _, a := range ev.Attrs {
		fmt.Fprintf(&b, " %s=%s", a.Key, a.Value)
	}
	if ev.Data != nil {
		fmt.Fprintf(&b, " data=%s", ev.Data)
	}
	return b.String()
}

type namedEvent struct {
	name string
	ev   *event.Event
}

// TestDataDriven runs testdata/filter.txt. Commands:
//
//	event NAME        input: key=value words; defines an event
//	spec              input: a JSON Spec; output: the events that pass
//	expr              input: an expression; output: the events that pass
//	redact            input: a JSON RedactSpec; output: each event redacted
//
// Regenerate with: go test ./internal/filter -run TestDataDriven -update
func TestDataDriven(t *testing.T) {
	var events []namedEvent
	datadriven.RunFile(t, "testdata/filter.txt", func(t *testing.T, c *datadriven.Case) string {
		in := strings.Join(c.Input, "\n")
		var f Filter
		var err error
		switch c.Cmd {
		case "event":
			events = append(events, namedEvent{c.Args[0], parseEvent(t, in)})
			return "ok"
		case "spec":
			var s Spec
			if err := json.Unmarshal([]byte(in), &s); err != nil {
				return "json error: " + err.Error()
			}
			f, err = Compile(s)
		case "expr":
			f, err = Expr(in)
			if err == nil {
				// The VM must agree with the lowered form.
				vmf, err := Expr(in, NoLowering())
				if err != nil {
					t.Fatalf("%s: NoLowering: %v", c.Pos, err)
				}
				for _, ne := range events {
					if got, want := f.Match(ne.ev), vmf.Match(ne.ev); got != want {
						t.Errorf("%s: %s on %s: lowered %v, VM %v", c.Pos, in, ne.name, got, want)
					}
				}
			}
		case "redact":
			var s RedactSpec
			if err := json.Unmarshal([]byte(in), &s); err != nil {
				return "json error: " + err.Error()
			}
			r, err := NewRedactor(s)
			if err != nil {
				return "error: " + err.Error()
			}
			var b strings.Builder
			for _, ne := range events {
				before := describe(ne.ev)
				out := r.Apply(ne.ev)
				if describe(ne.ev) != before {
					t.Errorf("%s: Apply modified its input %s", c.Pos, ne.name)
				}
				mark := "="
				if out != ne.ev {
					mark = "~"
				}
				fmt.Fprintf(&b, "%s %s %s\n", ne.name, mark, describe(out))
			}
			return b.String()
		default:
			t.Fatalf("%s: unknown command %q", c.Pos, c.Cmd)
		}
		if err != nil {
			return "error: " + err.Error()
		}
		var names []string
		for _, ne := range events {
			if f.Match(ne.ev) {
				names = append(names, ne.name)
			}
		}
		return fmt.Sprintf("%s: %s", f.Kind(), strings.Join(names, " "))
	})
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want error
		msg  string
	}{
		{`{}`, ErrSpec, "no dialect"},
		{`{"exact":{"type":"a"},"prefix":{"type":"b"}}`, ErrSpec, "more than one dialect"},
		{`{"name":"r1","all":[{"exact":{"type":"a"}},{"range":{"size":{"min":9,"max":1}}}]}`, ErrSpec, `filter "r1": all[1]: range: attribute "size": min 9 > max 1: filter: invalid specification`},
		{`{"all":[]}`, ErrSpec, "all: empty list"},
		{`{"exact":{"uid":"root"}}`, ErrSpec, `exact: attribute "uid" is numeric`},
		{`{"exact":{"Bad-Name":"x"}}`, ErrAttribute, `"Bad-Name"`},
		{`{"glob":{"subject":"/a/["}}`, ErrSpec, "unterminated character class"},
		{`{"glob":{"size":"1*"}}`, ErrSpec, "numeric"},
		{`{"prefix":{"type":""}}`, ErrSpec, "empty value"},
		{`{"any":[{"exact":{"type":"a"}},{"name":"inner","expr":"size >"}]}`, ErrExpr, `any[1]: rule "inner"`},
		{`{"not":{"deny":[]}}`, ErrSpec, "not: "},
		{`{"deny":["**/.ssh/**","{"]}`, ErrSpec, "deny[1]"},
	} {
		var s Spec
		if err := json.Unmarshal([]byte(tc.spec), &s); err != nil {
			t.Fatalf("unmarshal %s: %v", tc.spec, err)
		}
		_, err := Compile(s)
		if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.msg) {
			t.Errorf("Compile(%s) error = %v, want %v containing %q", tc.spec, err, tc.want, tc.msg)
		}
	}
}

func TestExprErrorPosition(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`size > `, "line 1, column 7"},
		{`type == "a" &&
  sise > 0`, "line 2, column 3"},
		{`size == "x"`, "line 1, column 6"},
		{`type`, "expected bool"},
		{strings.Repeat("size > 0 && ", 200) + "true", "exceeds maximum allowed nodes"},
	} {
		_, err := Expr(tc.src)
		if !errors.Is(err, ErrExpr) || !strings.Contains(fmt.Sprint(err), tc.want) {
			t.Errorf("Expr(%.30q) error = %v, want ErrExpr with %q", tc.src, err, tc.want)
		}
	}
}

func TestExprLowering(t *testing.T) {
	for _, tc := range []struct {
		src     string
		lowered bool
	}{
		{`type == "fs.write"`, true},
		{`size > 0 && comm != "rsync" || uid in [0, 1000]`, true},
		{`not (path startsWith "/data/") and priority == "critical"`, true},
		{`0 < size`, true},
		{`type in ["fs.write", "fs.create"]`, true},
		{`size > bytes`, false},
		{`path matches "^/data"`, false},
		{`attrs["tenant"] == "a"`, false},
		{`len(subject) > 3`, false},
	} {
		f, err := Expr(tc.src)
		if err != nil {
			t.Fatalf("Expr(%q): %v", tc.src, err)
		}
		_, got := f.(*lowered)
		if got != tc.lowered {
			t.Errorf("Expr(%q) lowered = %v, want %v", tc.src, got, tc.lowered)
		}
		if f.Kind() != "expr" {
			t.Errorf("Expr(%q).Kind() = %q, want expr", tc.src, f.Kind())
		}
	}
}

func TestCompositeOrderAndShortCircuit(t *testing.T) {
	calls := 0
	expensive := &countingFilter{cost: 100, result: true, calls: &calls}
	cheap, _ := Exact("type", "fs.write")
	f := All(expensive, cheap)
	ev := &event.Event{Type: "fs.read"}
	if f.Match(ev) {
		t.Fatalf("All(expensive, cheap).Match = true, want false")
	}
	if calls != 0 {
		t.Errorf("expensive filter called %d times, want 0 (cheap one first, short circuit)", calls)
	}
	g := Any(expensive, True())
	if !g.Match(ev) || calls != 0 {
		t.Errorf("Any(expensive, True) called expensive %d times, want 0", calls)
	}
	if got := Not(cheap).Match(ev); !got {
		t.Errorf("Not(exact).Match = %v, want true", got)
	}
}

type countingFilter struct {
	cost   int
	result bool
	calls  *int
}

func (c *countingFilter) Match(*event.Event) bool { *c.calls++; return c.result }
func (c *countingFilter) Kind() string            { return "counting" }
func (c *countingFilter) Cost() int               { return c.cost }
func (c *countingFilter) Validate() error         { return nil }

func sampleEvents(t testing.TB) []*event.Event {
	lines := []string{
		"type=fs.write subject=/data/notes/a.md size=120 bytes=20 uid=1000 gid=1000 pid=4242 comm=vim boundary=fuse",
		"type=fs.write subject=/home/u/.ssh/id_rsa size=3 uid=1000 comm=cat boundary=kernel",
		"type=fs.rename subject=/tmp/x oldpath=/home/u/.ssh/id_rsa uid=0 comm=mv",
		"type=fs.delete subject=/data/b.txt comm=rsync uid=0 priority=bulk",
		"type=vector.insert subject=doc-42 tenant=acme priority=critical",
		"type=fs.create subject=/data/版本/说明.md size=0 mode=33188",
	}
	evs := make([]*event.Event, len(lines))
	for i, l := range lines {
		evs[i] = parseEvent(t, l)
	}
	return evs
}

func TestZeroAllocs(t *testing.T) {
	evs := sampleEvents(t)
	specs := map[string]string{
		"exact":  `{"exact":{"type":"fs.write"}}`,
		"range":  `{"range":{"size":{"min":1,"max":1048576}}}`,
		"all":    `{"all":[{"prefix":{"type":"fs."}},{"not":{"exact":{"comm":"rsync"}}},{"exact":{"uid":"1000"}}]}`,
		"glob":   `{"glob":{"subject":"/data/**/*.md"}}`,
		"deny":   `{"deny":["**/.ssh/**","**/*.key"]}`,
		"suffix": `{"suffix":{"pid":"42"}}`,
		"attr":   `{"exact":{"tenant":"acme"}}`,
	}
	for name, js := range specs {
		var s Spec
		if err := json.Unmarshal([]byte(js), &s); err != nil {
			t.Fatal(err)
		}
		f, err := Compile(s)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, ev := range evs {
			if a := testing.AllocsPerRun(50, func() { f.Match(ev) }); a != 0 {
				t.Errorf("%s.Match(%s) allocs = %v, want 0", name, ev.Subject, a)
			}
		}
	}
	for _, src := range []string{`type == "fs.write" && size > 0`, `comm in ["vim", "cat"] || uid == 0`} {
		f, err := Expr(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if a := testing.AllocsPerRun(50, func() { f.Match(ev) }); a != 0 {
				t.Errorf("Expr(%q).Match allocs = %v, want 0", src, a)
			}
		}
	}
}

func TestRedactorCopyOnWrite(t *testing.T) {
	r, err := NewRedactor(RedactSpec{Name: "p", Key: "k", Rules: []RedactRule{
		{Field: "subject", Action: "mask", Segments: []int{1}},
		{Field: "uid", Action: "hash"},
		{Field: "comm", Action: "drop"},
		{Field: "attrs.tenant", Action: "hash"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ev := parseEvent(t, "type=fs.write subject=/home/alice/a.md uid=1000 comm=vim tenant=acme")
	orig := *ev
	orig.Attrs = append([]event.Attr(nil), ev.Attrs...)
	out := r.Apply(ev)
	if diff := cmp.Diff(&orig, ev); diff != "" {
		t.Errorf("Apply modified its input (-want +got):\n%s", diff)
	}
	if out.Subject != "/home/***/a.md" || out.Context.Comm != "" || out.Context.UID == 1000 {
		t.Errorf("Apply = %s, want subject masked, comm dropped, uid hashed", describe(out))
	}
	if v, _ := out.Attr("tenant"); !strings.HasPrefix(v, "h:") {
		t.Errorf("tenant = %q, want a hash", v)
	}
	again := r.Apply(ev)
	if diff := cmp.Diff(out, again); diff != "" {
		t.Errorf("Apply is not deterministic (-first +second):\n%s", diff)
	}
	untouched := &event.Event{Type: "x.y"}
	if got := r.Apply(untouched); got != untouched {
		t.Errorf("Apply(event without redactable fields) copied it, want the same pointer")
	}
	if a := testing.AllocsPerRun(100, func() { r.Apply(untouched) }); a != 0 {
		t.Errorf("Apply(event without redactable fields) allocs = %v, want 0", a)
	}
}

func TestRedactorErrors(t *testing.T) {
	for _, tc := range []struct {
		rule RedactRule
		msg  string
	}{
		{RedactRule{Field: "type", Action: "mask"}, `cannot redact field "type"`},
		{RedactRule{Field: "uid", Action: "burn"}, `unknown action "burn"`},
		{RedactRule{Field: "uid", Action: "mask", Segments: []int{1}}, "segments apply only to path fields"},
		{RedactRule{Field: "data", Action: "hash"}, "data can only be dropped"},
	} {
		_, err := NewRedactor(RedactSpec{Name: "pol", Rules: []RedactRule{{Field: "comm", Action: "mask"}, tc.rule}})
		if !errors.Is(err, ErrSpec) || !strings.Contains(fmt.Sprint(err), tc.msg) || !strings.Contains(fmt.Sprint(err), `redact "pol": rule 1`) {
			t.Errorf("NewRedactor(%+v) error = %v, want ErrSpec naming the policy and rule 1 with %q", tc.rule, err, tc.msg)
		}
	}
}
