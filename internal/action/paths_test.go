package action

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRootsEscape: every way out of a root is refused: other paths, ..,
// relative paths, symbolic links (absolute and relative, in the last
// element and in a directory) that lead outside.
func TestRootsEscape(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "secret")
	os.MkdirAll(filepath.Join(root, "d"), 0o755)
	os.MkdirAll(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "key"), []byte("secret"), 0o600)
	os.WriteFile(filepath.Join(root, "d", "ok"), []byte("fine"), 0o644)
	os.Symlink(outside, filepath.Join(root, "abslink"))
	os.Symlink("../../secret", filepath.Join(root, "d", "rellink"))
	os.Symlink(filepath.Join(outside, "key"), filepath.Join(root, "keylink"))
	os.Symlink("ok", filepath.Join(root, "d", "inside")) // stays beneath: allowed
	r, err := NewRoots(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{filepath.Join(root, "d", "ok"), true},
		{filepath.Join(root, "d", "inside"), true},
		{filepath.Join(outside, "key"), false},
		{root + "/d/../../secret/key", false},
		{root + "/d/..", false},
		{"d/ok", false},
		{filepath.Join(root, "abslink", "key"), false},
		{filepath.Join(root, "d", "rellink", "key"), false},
		{filepath.Join(root, "keylink"), false},
		{root + "x/key", false}, // a sibling whose name starts like the root
		{"/proc/self/root" + outside + "/key", false},
	} {
		f, err := r.Open(tc.path, unix.O_RDONLY, 0)
		if tc.ok {
			if err != nil {
				t.Errorf("Open(%s) = %v, want ok", tc.path, err)
			} else {
				f.Close()
			}
			continue
		}
		if err == nil {
			f.Close()
			t.Errorf("Open(%s) = ok, want refused", tc.path)
		} else if !errors.Is(err, ErrOutsideRoots) {
			t.Errorf("Open(%s) = %v, want ErrOutsideRoots", tc.path, err)
		}
	}
}

// TestActionsCannotEscape: the file actions refuse, or do not follow,
// paths that lead outside the roots; nothing outside changes.
func TestActionsCannotEscape(t *testing.T) {
	f := newFixture(t)
	outside := filepath.Join(filepath.Dir(f.root), "secret")
	os.MkdirAll(outside, 0o755)
	key := filepath.Join(outside, "key")
	os.WriteFile(key, []byte("secret"), 0o600)
	os.Symlink(outside, filepath.Join(f.root, "link"))
	os.Symlink(key, filepath.Join(f.root, "keylink"))
	ctx := context.Background()
	for _, tc := range []struct {
		typ  string
		args Args
	}{
		{"quarantine", Args{"path": filepath.Join(f.root, "link", "key")}},
		{"quarantine", Args{"path": f.root + "/../secret/key"}},
		{"tag", Args{"path": filepath.Join(f.root, "link", "key"), "name": "x", "value": "y"}},
		{"tag", Args{"path": filepath.Join(f.root, "keylink"), "name": "x", "value": "y"}},
		{"snapshot", Args{"paths": []string{filepath.Join(f.root, "link", "key"), filepath.Join(f.root, "keylink")}}},
	} {
		typ, _ := NewRegistry().Lookup(tc.typ)
		act, err := typ.New(&Call{Env: f.env, Args: tc.args, Key: "r/m/0", Rule: "r"})
		if err != nil {
			t.Fatal(err)
		}
		_, state, err := act.Validate(ctx)
		if err == nil {
			var res []byte
			res, err = act.Execute(ctx, state)
			if tc.typ == "snapshot" && err == nil {
				var m Manifest
				if jerr := jsonUnmarshal(res, &m); jerr != nil || len(m.Files) != 0 {
					t.Errorf("snapshot copied %+v from outside the root", m.Files)
				}
				continue
			}
		}
		if err == nil {
			t.Errorf("%s %v = ok, want refused", tc.typ, tc.args)
		}
	}
	if data, err := os.ReadFile(key); err != nil || string(data) != "secret" {
		t.Fatalf("the file outside was moved: %v", err)
	}
	if _, ok := xattr(t, key, "user.x"); ok {
		t.Fatal("the file outside was tagged")
	}
}
