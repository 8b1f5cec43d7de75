package enrich

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/semprop/semprop/event"
)

// TestTreeOptions: two trees under one set of shared options, one with
// its own hash, counts and ignore patterns, one with content facts off.
func TestTreeOptions(t *testing.T) {
	shared := Options{Hash: HashXXH3, Ignore: []string{"*.tmp"}}
	var docs, build TreeOptions
	if err := yaml.Unmarshal([]byte("{hash: sha256, counts: true, ignore: ['*.bak']}"), &docs); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte("{content: false}"), &build); err != nil {
		t.Fatal(err)
	}
	run := func(tree TreeOptions) ([]*event.Event, string) {
		root := t.TempDir()
		rec := &recorder{}
		o, err := shared.WithTree(tree)
		if err != nil {
			t.Fatal(err)
		}
		o.Next, o.Root = rec, root
		p := newTestPublisher(t, o)
		for _, n := range []string{"a.txt", "b.tmp", "c.bak"} {
			writeFile(t, filepath.Join(root, n), "one two\nthree\n")
			publish(t, p, writeEvent(filepath.Join(root, n)))
		}
		return rec.take(), root
	}
	names := func(evs []*event.Event) string {
		var out []string
		for _, ev := range evs {
			out = append(out, filepath.Base(ev.Subject))
		}
		return strings.Join(out, ",")
	}

	evs, _ := run(docs)
	if n := names(evs); n != "a.txt" {
		t.Errorf("docs tree published %s, want a.txt (*.tmp shared, *.bak its own)", n)
	} else {
		if h := attr(evs[0], AttrHash); len(h) != 64 {
			t.Errorf("docs tree hash %q, want SHA-256 (64 digits)", h)
		}
		if l, w := attr(evs[0], AttrLines), attr(evs[0], AttrWords); l != "2" || w != "3" {
			t.Errorf("docs tree lines=%q words=%q, want 2 and 3", l, w)
		}
	}
	evs, _ = run(build)
	if n := names(evs); n != "a.txt,c.bak" {
		t.Errorf("build tree published %s, want a.txt,c.bak", n)
	}
	for _, ev := range evs {
		if h, ok := ev.Attr(AttrHash); ok {
			t.Errorf("build tree (content off): %s has hash %q", ev.Subject, h)
		}
	}
	evs, _ = run(TreeOptions{})
	if h := attr(evs[0], AttrHash); len(h) != 32 || attr(evs[0], AttrLines) != "" {
		t.Errorf("a tree without overrides: hash %q lines %q, want xxh3 (32 digits), no counts", h, attr(evs[0], AttrLines))
	}
	if len(shared.Ignore) != 1 {
		t.Errorf("WithTree changed the shared options: ignore %v", shared.Ignore)
	}
}

// TestTreeOptionsValidate names the bad field.
func TestTreeOptionsValidate(t *testing.T) {
	bad := "md5"
	mode := "keep"
	for _, tc := range []struct {
		t    TreeOptions
		want string
	}{
		{TreeOptions{Hash: &bad}, "hash"},
		{TreeOptions{VCS: &mode}, "vcs"},
		{TreeOptions{MaxSize: -1}, "max_size"},
		{TreeOptions{Ignore: []string{strings.Repeat("x", 5000)}}, "ignore"},
	} {
		err := tc.t.Validate()
		if !errors.Is(err, ErrTree) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an ErrTree about %s", tc.t, err, tc.want)
		}
		if _, err := (Options{}).WithTree(tc.t); err == nil {
			t.Errorf("WithTree(%+v) succeeded", tc.t)
		}
	}
}
