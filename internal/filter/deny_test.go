package filter

import (
	"path"
	"testing"

	"github.com/semprop/semprop/event"
)

// TestDenyCoversDirectoryContents: a deny pattern that names a directory
// denies the directory and everything below it ("**/.ssh" used to let
// /home/u/.ssh/id_rsa through), and paths are cleaned before matching.
func TestDenyCoversDirectoryContents(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		denied  []string
		allowed []string
	}{
		{"**/.ssh", []string{"/home/u/.ssh", "/home/u/.ssh/id_rsa", "/home/u/.ssh/keys/a", ".ssh/config", "/home/u/x/../.ssh/id_rsa"},
			[]string{"/home/u/ssh/id_rsa", "/home/u/.sshx/a", "/home/u/a.ssh"}},
		{"/etc/secrets", []string{"/etc/secrets", "/etc/secrets/db/pw", "/etc//secrets/x", "/etc/./secrets/x", "/tmp/../etc/secrets/x"},
			[]string{"/etc/secretsx", "/etc/secret", "/tmp/etc/secrets"}},
		{"/etc/secrets/", []string{"/etc/secrets", "/etc/secrets/a"}, []string{"/etc/secretsx"}},
		{"*.key", []string{"/a/b.key", "/a/dir.key/inside", "b.key"}, []string{"/a/b.keys", "/a/key"}},
		{"**/.ssh/**", []string{"/home/u/.ssh", "/home/u/.ssh/id_rsa"}, []string{"/home/u/ssh"}},
		{"/data/*/private", []string{"/data/u/private", "/data/u/private/a/b"}, []string{"/data/u/public/private2", "/data/private"}},
		{"{/srv/a,**/*.pem}", []string{"/srv/a/x", "/etc/x.pem", "/etc/ca.pem/y"}, []string{"/srv/ab", "/srv/b/a"}},
		{`re:^/var/lib/[^/]+/keys$`, []string{"/var/lib/app/keys", "/var/lib/app/keys/k1"}, []string{"/var/lib/app/keysx", "/var/lib/keys"}},
	} {
		d, err := Deny(tc.pattern)
		if err != nil {
			t.Fatalf("Deny(%q): %v", tc.pattern, err)
		}
		for _, p := range tc.denied {
			for _, ev := range []*event.Event{
				{Type: "fs.write", Subject: p},
				{Type: "fs.rename", Subject: "/tmp/x", Context: event.Context{OldPath: p}},
				{Type: "fs.symlink", Subject: "/tmp/l", Context: event.Context{Target: p}},
			} {
				if d.Match(ev) {
					t.Errorf("Deny(%q) lets %s through (subject %q oldpath %q target %q)", tc.pattern, ev.Type, ev.Subject, ev.Context.OldPath, ev.Context.Target)
				}
			}
		}
		for _, p := range tc.allowed {
			if !d.Match(&event.Event{Type: "fs.write", Subject: p}) {
				t.Errorf("Deny(%q) denies %q, want it allowed", tc.pattern, p)
			}
		}
	}
}

// TestDenyRelativeSymlinkTarget: a relative target is resolved against
// the link's directory.
func TestDenyRelativeSymlinkTarget(t *testing.T) {
	d := MustDeny("/home/u/.ssh")
	for _, tc := range []struct {
		subject, target string
		pass            bool
	}{
		{"/home/u/x/l", "../.ssh/id_rsa", false},
		{"/home/u/l", ".ssh", false},
		{"/home/u/x/l", "../ssh/id_rsa", true},
		{"/tmp/l", "id_rsa", true},
	} {
		ev := &event.Event{Type: "fs.symlink", Subject: tc.subject, Context: event.Context{Target: tc.target}}
		if got := d.Match(ev); got != tc.pass {
			t.Errorf("Deny(/home/u/.ssh).Match(link %s -> %s) = %v, want %v", tc.subject, tc.target, got, tc.pass)
		}
	}
}

func TestIsClean(t *testing.T) {
	for _, p := range []string{"/", "/a", "/a/b", "a", "a/b", ".", "..", "./a", "a/.", "/a/", "//a", "/a/../b", "/..", "a//b", "/a/.b", "/a/..b", "...", "/a/b/..", "../a", "../../a", "a/../b", "../a/..", "./..", "../."} {
		if got, want := isClean(p), path.Clean(p) == p; got != want {
			t.Errorf("isClean(%q) = %v, want %v", p, got, want)
		}
	}
}
