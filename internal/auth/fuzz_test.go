package auth

import (
	"path"
	"strings"
	"testing"

	"github.com/semprop/semprop/event"
)

// FuzzCheckPublishPaths: whatever path attributes a path-limited publisher
// sends, an accepted event names only clean absolute paths inside its
// paths (the target resolved against the subject's directory).
func FuzzCheckPublishPaths(f *testing.F) {
	for _, s := range [][3]string{
		{"/srv/a/x", "", ""},
		{"/srv/a/../../etc/passwd", "", ""},
		{"/srv/a/x", "/srv/a/../b", "../../../etc/shadow"},
		{"/srv/a/./x", "/srv//a/y", "/srv/a/z"},
		{"srv/a/x", "", "x"},
		{"/srv/a/x/", "/srv/a", "."},
		{"/srv/a/x", "", "../../a/y"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	a, err := New([]TokenSpec{{Name: "p", Token: "token-token-0123456789", Scopes: []string{"publish:>"}, Paths: []string{"/srv/a/**"}}})
	if err != nil {
		f.Fatal(err)
	}
	p, _ := a.Lookup("p")
	inside := func(s string) bool {
		// "/srv/a/**" covers /srv/a itself.
		return (s == "/srv/a" || strings.HasPrefix(s, "/srv/a/")) && path.Clean(s) == s
	}
	f.Fuzz(func(t *testing.T, subject, oldpath, target string) {
		ev := &event.Event{Type: "app.x", Source: "app://f", Subject: subject}
		ev.Context.OldPath, ev.Context.Target = oldpath, target
		if _, err := p.CheckPublish(ev); err != nil {
			return
		}
		if !inside(subject) {
			t.Errorf("accepted subject %q outside /srv/a", subject)
		}
		if oldpath != "" && !inside(oldpath) {
			t.Errorf("accepted oldpath %q outside /srv/a", oldpath)
		}
		if target != "" {
			resolved := target
			if !strings.HasPrefix(target, "/") {
				resolved = path.Join(path.Dir(subject), target)
			}
			if !inside(resolved) {
				t.Errorf("accepted target %q (%q) outside /srv/a", target, resolved)
			}
		}
	})
}
