package enrich

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/semprop/semprop/event"
)

// TestRulesMatch checks the matcher against the semantics git documents
// for gitignore files.
func TestRulesMatch(t *testing.T) {
	tests := []struct {
		patterns []string
		path     string
		isDir    bool
		want     bool
	}{
		{[]string{"*.log"}, "a.log", false, true},
		{[]string{"*.log"}, "d/e/a.log", false, true},
		{[]string{"*.log"}, "a.logx", false, false},
		{[]string{"*.log"}, "d/a.log/x", false, true}, // a directory named a.log excludes what is inside
		{[]string{"/*.c"}, "a.c", false, true},
		{[]string{"/*.c"}, "d/a.c", false, false},
		{[]string{"doc/frotz/"}, "doc/frotz", true, true},
		{[]string{"doc/frotz/"}, "a/doc/frotz", true, false},
		{[]string{"doc/frotz/"}, "doc/frotz/x", false, true},
		{[]string{"frotz/"}, "a/frotz", true, true},
		{[]string{"frotz/"}, "a/frotz", false, false}, // a file, not a directory
		{[]string{"frotz/"}, "a/frotz/b", false, true},
		{[]string{"**/foo"}, "foo", false, true},
		{[]string{"**/foo"}, "x/y/foo", false, true},
		{[]string{"**/foo/bar"}, "x/foo/bar", false, true},
		{[]string{"abc/**"}, "abc/x/y", false, true},
		{[]string{"abc/**"}, "abc", true, false},
		{[]string{"a/**/b"}, "a/b", false, true},
		{[]string{"a/**/b"}, "a/x/y/b", false, true},
		{[]string{"a/**/b"}, "a/x/y/c", false, false},
		{[]string{"foo/*"}, "foo/bar", false, true},
		{[]string{"foo/*"}, "foo/bar/baz", false, true}, // through the directory foo/bar
		{[]string{"foo/*"}, "x/foo/bar", false, false},
		{[]string{"*.log", "!keep.log"}, "keep.log", false, false},
		{[]string{"!keep.log", "*.log"}, "keep.log", false, true},      // the last match decides
		{[]string{"build/", "!build/keep"}, "build/keep", false, true}, // no re-include below an excluded directory
		{[]string{"/*", "!/src"}, "src/main.go", false, false},
		{[]string{"/*", "!/src"}, "other/x", false, true},
		{[]string{"# comment"}, "# comment", false, false},
		{[]string{`\#hash`}, "#hash", false, true},
		{[]string{`\!bang`}, "!bang", false, true},
		{[]string{"trail   "}, "trail", false, true},
		{[]string{`sp\ `}, "sp ", false, true},
		{[]string{"a?c"}, "abc", false, true},
		{[]string{"a?c"}, "a/c", false, false},
		{[]string{"[a-c]x"}, "bx", false, true},
		{[]string{"[!a-c]x"}, "bx", false, false},
		{[]string{"[!a-c]x"}, "dx", false, true},
		{[]string{"[unclosed"}, "[unclosed", false, false},
		{[]string{""}, "x", false, false},
		{[]string{"/"}, "x", false, false},
		{[]string{"**"}, "x/y", false, true},
		{[]string{"a**b"}, "axxb", false, true},
	}
	for _, tt := range tests {
		rs := ParseRules(tt.patterns)
		if got := rs.Match(tt.path, tt.isDir); got != tt.want {
			t.Errorf("ParseRules(%q).Match(%q, dir=%v) = %v, want %v", tt.patterns, tt.path, tt.isDir, got, tt.want)
		}
	}
}

// TestNestedIgnoreFiles publishes events of a tree with .sempropignore
// files at two levels and configured patterns, then changes a file.
func TestNestedIgnoreFiles(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, IgnoreFile), "*.log\nbuild/\n")
	writeFile(t, filepath.Join(root, "sub", IgnoreFile), "!keep.log\n*.tmp\n")
	rec := &recorder{}
	p := newTestPublisher(t, Options{Next: rec, Root: root, Ignore: []string{"*.bak", "!important.bak"}, NoContent: true})
	paths := []string{
		"a.log", "sub/keep.log", "sub/other.log", "sub/x.tmp", "x.tmp", "build/out.o",
		"sub/build/y", "f.bak", "important.bak", "sub/important.bak", "plain.txt",
	}
	var evs []*event.Event
	for _, rel := range paths {
		evs = append(evs, &event.Event{Type: event.TypeWrite, Subject: filepath.Join(root, rel)})
	}
	evs = append(evs, &event.Event{Type: event.TypeOverflow, Subject: root})
	publish(t, p, evs...)
	want := []string{"sub/keep.log", "x.tmp", "important.bak", "sub/important.bak", "plain.txt", ""}
	if got := relSubjects(root, rec.take()); !slices.Equal(got, want) {
		t.Errorf("published %q, want %q", got, want)
	}
	if st := p.Stats(); st.Ignored != 6 {
		t.Errorf("Stats().Ignored = %d, want 6", st.Ignored)
	}

	// The nested file changes: *.tmp no longer ignored, other.log is kept.
	writeFile(t, filepath.Join(root, "sub", IgnoreFile), "!other.log\n")
	publish(t, p,
		&event.Event{Type: event.TypeWrite, Subject: filepath.Join(root, "sub", IgnoreFile)},
		&event.Event{Type: event.TypeWrite, Subject: filepath.Join(root, "sub/x.tmp")},
		&event.Event{Type: event.TypeWrite, Subject: filepath.Join(root, "sub/other.log")},
		&event.Event{Type: event.TypeWrite, Subject: filepath.Join(root, "sub/keep.log")},
	)
	want = []string{"sub/" + IgnoreFile, "sub/x.tmp", "sub/other.log"}
	if got := relSubjects(root, rec.take()); !slices.Equal(got, want) {
		t.Errorf("after the change: published %q, want %q", got, want)
	}
	// A rename into an ignored name is published (the old name goes);
	// one between ignored names is not.
	rename := func(from, to string) *event.Event {
		ev := &event.Event{Type: event.TypeRename, Subject: filepath.Join(root, to)}
		ev.Context.OldPath = filepath.Join(root, from)
		return ev
	}
	publish(t, p, rename("plain.txt", "plain.log"), rename("a.log", "b.log"))
	if got := relSubjects(root, rec.take()); !slices.Equal(got, []string{"plain.log"}) {
		t.Errorf("renames: published %q, want [plain.log]", got)
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func relSubjects(root string, evs []*event.Event) []string {
	var out []string
	for _, ev := range evs {
		r, _ := filepath.Rel(root, ev.Subject)
		if r == "." {
			r = ""
		}
		out = append(out, r)
	}
	return out
}
