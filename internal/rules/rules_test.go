package rules

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/cep"
	"github.com/semprop/semprop/internal/filter"
)

// TestParseErrors: every load error names the file, the line and the rule.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		yaml, want string
	}{
		{"rules:\n  - name: a\n    when: 'type =='\n", `f.yaml:3: rule "a": when: "type ==": line 1`},
		{"rules:\n  - name: a\n    when: 'type == \"x\"'\n    coutn: 3\n", `f.yaml:4: rule "a": unknown key "coutn"`},
		{"rules:\n  - name: A b\n    when: 'true'\n", `f.yaml:2: rule "A b": name: want [a-z0-9_-]+`},
		{"rules:\n  - when: 'true'\n", `f.yaml:2: name is required`},
		{"rules:\n  - name: a\n    when: 'true'\n    within: 5s\n", `f.yaml:4: rule "a": within does not go with a single-event rule`},
		{"rules:\n  - name: a\n    when: 'true'\n    count: 0\n", `f.yaml:4: rule "a": count: "0": want a positive integer`},
		{"rules:\n  - name: a\n    when: 'true'\n    count: 2\n    within: soon\n", `f.yaml:5: rule "a": within: "soon"`},
		{"rules:\n  - name: a\n    when: 'true'\n    count: 2\n    by: nosuch(x)\n", `f.yaml:5: rule "a": by: "nosuch(x)"`},
		{"rules:\n  - name: a\n    absent: 'true'\n", `f.yaml:3: rule "a": absent needs for:`},
		{"rules:\n  - name: a\n    when: 'true'\n    not_followed_by: 'true'\n", `f.yaml:4: rule "a": not_followed_by needs when: and within:`},
		{"rules:\n  - name: a\n    sequence:\n      - {when: 'true'}\n", `f.yaml:3: rule "a": sequence: want two or more steps`},
		{"rules:\n  - name: a\n    sequence:\n      - {as: w, when: 'true'}\n      - {when: 'subject == v.subject'}\n", `f.yaml:5: rule "a": sequence step 2:`},
		{"rules:\n  - name: a\n    sequence:\n      - {as: pid, when: 'true'}\n      - {when: 'true'}\n", `f.yaml:4: rule "a": sequence step 1: as "pid"`},
		{"rules:\n  - name: a\n    when: 'true'\n    severity: loud\n", `f.yaml:4: rule "a": severity "loud"`},
		{"rules:\n  - name: a\n    when: 'true'\n    output: '{{.x'\n", `f.yaml:4: rule "a": output:`},
		{"rules:\n  - name: a\n    when: 'true'\n  - name: a\n    when: 'true'\n", `f.yaml:4: rule "a": also defined at f.yaml:2`},
		{"rules: [\n", `f.yaml: yaml:`},
		{"other: 1\n", `f.yaml:1: unknown key "other"`},
		{"rules:\n  - name: a\n    when: 'true'\n    when: 'false'\n", `f.yaml:4: rule "a": when: given twice`},
	} {
		_, err := Parse("f.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.yaml, err, tc.want)
		}
		if err != nil && !errors.Is(err, ErrRule) && !errors.Is(err, ErrYAML) {
			t.Errorf("Parse(%q) = %v, want ErrRule or ErrYAML", tc.yaml, err)
		}
	}
}

func TestParseKinds(t *testing.T) {
	set, err := Parse("f.yaml", []byte(`
rules:
  - name: burst-deletes
    when: 'type == "fs.delete"'
    count: 20
    within: 10s
    by: pid
    distinct: subject
  - name: edit-then-delete
    sequence:
      - {as: w, when: 'type == "fs.write"'}
      - {when: 'type == "fs.delete" && subject == w.subject'}
    within: 5s
    by: subject
  - name: lock-left-behind
    when: 'type == "fs.create" && subject endsWith ".lock"'
    not_followed_by: 'type == "fs.delete" && subject == first.subject'
    within: 30s
  - name: quiet-ingest
    absent: 'type == "fs.write" && subject startsWith "/srv/ingest/"'
    for: 10m
    enabled: false
  - name: any
    when: 'size > 10'
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind  cep.Kind
		types []string
	}{
		{cep.KindCount, []string{"fs.delete"}},
		{cep.KindSequence, []string{"fs.delete", "fs.write"}},
		{cep.KindNotFollowedBy, []string{"fs.create", "fs.delete"}},
		{cep.KindAbsent, []string{"fs.write"}},
		{cep.KindSingle, nil},
	}
	for i, r := range set.Rules {
		if r.Kind() != want[i].kind || strings.Join(r.pattern.Types, ",") != strings.Join(want[i].types, ",") ||
			(r.pattern.Types == nil) != (want[i].types == nil) {
			t.Errorf("rule %s: kind %v types %q, want %v %q", r.Name, r.Kind(), r.pattern.Types, want[i].kind, want[i].types)
		}
	}
	if got := len(set.patterns(0)); got != 4 {
		t.Errorf("%d enabled patterns, want 4", got)
	}
}

// TestEnvMatchesFilter: conditions that read bound events see every field
// exactly as --filter expressions do.
func TestEnvMatchesFilter(t *testing.T) {
	ev := &event.Event{Seq: 7, Type: "fs.write", Source: "s", Subject: "/a/b", Priority: event.PriorityHigh,
		Boundary: event.BoundaryFUSE, DataContentType: "application/json", ID: event.NewID()}
	ev.Boundaries = ev.Boundaries.Add(event.BoundaryFUSE).Add(event.BoundaryKernel)
	ev.Context.SetPID(12)
	ev.Context.SetUID(0)
	ev.Context.SetSize(99)
	ev.Context.Comm, ev.Context.Exe, ev.Context.OldPath, ev.Context.Target = "vim", "/usr/bin/vim", "/a/old", "/t"
	ev.SetAttr("tenant", "x")
	bare := &event.Event{Type: "fs.delete"}
	exprs := []string{
		`seq == 7`, `seq == -1`, `type == "fs.write"`, `source == "s"`, `subject == "/a/b"`, `path == "/a/b"`,
		`priority == "high"`, `priority == "normal"`, `boundary == "fuse"`, `boundaries == "fuse,kernel"`,
		`pid == 12`, `pid == -1`, `tid == -1`, `uid == 0`, `gid == -1`, `size == 99`, `bytes == -1`,
		`offset == -1`, `length == -1`, `mode == -1`, `inode == -1`, `comm == "vim"`, `exe == "/usr/bin/vim"`,
		`oldpath == "/a/old"`, `target == "/t"`, `datacontenttype == "application/json"`,
		`attrs["tenant"] == "x"`, `id != ""`, `id == ""`, `len(attrs) == 0`,
	}
	for _, src := range exprs {
		f, err := filter.Expr(src)
		if err != nil {
			t.Fatal(err)
		}
		// The same expression run on the VM with a bound event.
		c, err := compileCond("("+src+") && first.type != \"-\"", map[string]int{"first": 0})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range []*event.Event{ev, bare} {
			if got, want := c.Match(e, []*event.Event{e}), f.Match(e); got != want {
				t.Errorf("%q on %v: rules %v, filter %v", src, e, got, want)
			}
		}
	}
}

func TestLint(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "r.yaml")
	os.WriteFile(p, []byte("rules:\n  - name: a\n    when: 'size > 1'\n    count: 2\n"), 0o644)
	var out bytes.Buffer
	if err := Lint(&out, dir); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"r.yaml:2: a: count, enabled, reads every type", "warning: its conditions do not say", "warning: no within", "1 rule(s) ok"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("lint output %q lacks %q", out.String(), want)
		}
	}
	os.WriteFile(filepath.Join(dir, "bad.yml"), []byte("rules:\n  - name: b\n    when: 'size >'\n"), 0o644)
	if err := Lint(&out, dir); err == nil || !strings.Contains(err.Error(), "bad.yml:3") {
		t.Errorf("lint of a bad file: %v, want an error at bad.yml:3", err)
	}
}

func TestTestRejectsBadLog(t *testing.T) {
	set, _ := Parse("f", []byte("rules:\n  - name: a\n    when: 'true'\n"))
	for _, tc := range []struct{ log, want string }{
		{"{not json}\n", "events line 1"},
		{`{"specversion":"1.0","id":"x","source":"s","type":"a"}` + "\n", "events line 1: no time"},
		{`{"specversion":"1.0","id":"x","source":"s","type":"a","time":"2026-01-01T00:00:00Z","seq":2}` + "\n\n" +
			`{"specversion":"1.0","id":"y","source":"s","type":"a","time":"2026-01-01T00:00:00Z","seq":2}` + "\n", "events line 3: seq 2 also on line 1"},
	} {
		err := Test(&bytes.Buffer{}, set, strings.NewReader(tc.log), TestOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrEvents) {
			t.Errorf("Test(%q) = %v, want ErrEvents with %q", tc.log, err, tc.want)
		}
	}
}

func TestMatchIDDeterministic(t *testing.T) {
	a := MatchID(TypeMatch, "r", "k", 1e12, []uint64{1, 2})
	if b := MatchID(TypeMatch, "r", "k", 1e12, []uint64{1, 2}); a != b {
		t.Errorf("same match, IDs %v and %v", a, b)
	}
	if b := MatchID(TypeMatch, "r", "k", 1e12, []uint64{1, 3}); a == b {
		t.Error("different seqs, same ID")
	}
	if got := a.Time(); got.UnixMilli() != 1e6 {
		t.Errorf("ID time %v, want the match time", got)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/cases/*.txt")
	for _, p := range files {
		data, _ := os.ReadFile(p)
		s := string(data)
		if i := strings.Index(s, "-- rules.yaml --\n"); i >= 0 {
			s = s[i+len("-- rules.yaml --\n"):]
			if j := strings.Index(s, "\n-- "); j >= 0 {
				s = s[:j+1]
			}
			f.Add([]byte(s))
		}
	}
	f.Add([]byte("rules:\n  - name: a\n    when: 'type == \"x\"'\n    count: 2\n    by: dir(subject)\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := Parse("f.yaml", data)
		if err != nil {
			if !errors.Is(err, ErrRule) && !errors.Is(err, ErrYAML) {
				t.Fatalf("error %v wraps neither ErrRule nor ErrYAML", err)
			}
			return
		}
		ev := &event.Event{Seq: 1, Type: "x", Source: "s", Subject: "/a", Time: time.Unix(1, 0)}
		var out bytes.Buffer
		if err := Test(&out, set, strings.NewReader(string(ev.AppendJSON(nil))+"\n"), TestOptions{}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestBoundEqMatchesVM: `field == name.field` run natively agrees with
// the expression VM.
func TestBoundEqMatchesVM(t *testing.T) {
	a := &event.Event{Seq: 1, Type: "fs.write", Subject: "/a"}
	a.Context.SetPID(5)
	a.Context.OldPath = "/a"
	b := &event.Event{Seq: 2, Type: "fs.rename", Subject: "/b"}
	b.Context.SetPID(5)
	b.Context.OldPath = "/a"
	c := &event.Event{Seq: 3, Type: "fs.delete", Subject: "/a"} // no pid
	bound := map[string]int{"first": 0}
	for _, src := range []string{
		`subject == first.subject`, `first.subject == subject`, `oldpath == first.subject`, `pid == first.pid`,
		`pid == first.size`, `seq == first.seq`, `type == "fs.rename" && subject == first.oldpath`,
		`path == first.subject`, `comm == first.comm`,
	} {
		native, err := compileCond(src, bound)
		if err != nil {
			t.Fatal(err)
		}
		if native.prog != nil {
			t.Errorf("%q was not lowered", src)
		}
		vm, err := compileCond("("+src+`) && first.type != "-"`, bound)
		if err != nil {
			t.Fatal(err)
		}
		if vm.prog == nil {
			t.Fatalf("%q: the reference was lowered", src)
		}
		for _, ev := range []*event.Event{a, b, c} {
			for _, first := range []*event.Event{a, b, c} {
				bs := []*event.Event{first}
				if got, want := native.Match(ev, bs), vm.Match(ev, bs); got != want {
					t.Errorf("%q on %v after %v: native %v, VM %v", src, ev, first, got, want)
				}
			}
		}
	}
}

// TestDocsRules: every rule in docs/rules.md loads.
func TestDocsRules(t *testing.T) {
	data, err := os.ReadFile("../../docs/rules.md")
	if err != nil {
		t.Skipf("docs not found: %v", err)
	}
	blocks := strings.Split(string(data), "```yaml\n")[1:]
	if len(blocks) < 8 {
		t.Fatalf("%d yaml blocks in docs/rules.md, want at least 8", len(blocks))
	}
	for i, b := range blocks {
		b = b[:strings.Index(b, "```")]
		if !strings.HasPrefix(b, "rules:") {
			b = "rules:\n" + b
		}
		if _, err := Parse(fmt.Sprintf("docs block %d", i+1), []byte(b)); err != nil {
			t.Errorf("docs block %d: %v\n%s", i+1, err, b)
		}
	}
}

// TestAssumeType: a condition without its `type == X` conjunct accepts the
// same events of type X as with it.
func TestAssumeType(t *testing.T) {
	evs := []*event.Event{
		{Type: "fs.write", Subject: "/srv/a"}, {Type: "fs.write", Subject: "/tmp/a"},
		{Type: "fs.write", Subject: "/srv/b", Context: event.Context{Comm: "rsync"}},
	}
	for _, src := range []string{
		`type == "fs.write"`, `type == "fs.write" && subject startsWith "/srv/"`,
		`"fs.write" == type && (subject endsWith "a" || comm == "rsync")`, `type == "fs.write" && type == "fs.write"`,
	} {
		full, err := compileCond(src, nil)
		if err != nil {
			t.Fatal(err)
		}
		lean, _ := compileCond(src, nil)
		if err := lean.assumeType("fs.write"); err != nil {
			t.Fatal(err)
		}
		if lean.pre != nil && fmt.Sprint(lean.pre) == fmt.Sprint(full.pre) {
			t.Errorf("%q: nothing dropped", src)
		}
		for _, ev := range evs {
			if got, want := lean.Match(ev, nil), full.Match(ev, nil); got != want {
				t.Errorf("%q on %v: %v without the type check, %v with", src, ev, got, want)
			}
		}
	}
}
