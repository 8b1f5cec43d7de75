package daemon

import (
	"bufio"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/event"
	"github.com/semprop/semprop/internal/config"
)

// TestPerTreeEnrich: a tree's enrich: mapping overrides the shared
// settings for that tree only, and a typo in it is refused at load.
func TestPerTreeEnrich(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for fanotify")
	}
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	os.MkdirAll(a, 0o755)
	os.MkdirAll(b, 0o755)
	on, sha := true, "sha256"
	c := defaults(t)
	c.Watch = []config.Tree{{Path: a, Enrich: &config.TreeEnrich{Content: &on, Hash: &sha}}, {Path: b}}
	_, url := startT(t, c)
	for _, d := range []string{a, b} {
		if err := os.WriteFile(filepath.Join(d, "f.txt"), []byte("hello\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hashes := map[string]string{}
	deadline := time.Now().Add(10 * time.Second)
	for len(hashes) < 2 && time.Now().Before(deadline) {
		resp, err := http.Get(url + "/v1/events?after=0&type=fs.write")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev event.Event
			if err := ev.UnmarshalJSON(sc.Bytes()); err != nil {
				t.Fatal(err)
			}
			h, _ := ev.Attr("hash")
			hashes[filepath.Dir(ev.Subject)] = h
		}
		resp.Body.Close()
		time.Sleep(50 * time.Millisecond)
	}
	if h := hashes[a]; len(h) != 64 {
		t.Errorf("tree a (content on, sha256): hash %q, want 64 hex digits", h)
	}
	if h, ok := hashes[b]; !ok || h != "" {
		t.Errorf("tree b (shared: content off): hash %q (seen %v), want none", h, ok)
	}

	p := filepath.Join(root, "c.yaml")
	os.WriteFile(p, []byte("watch: [{path: "+a+", enrich: {hashes: sha256}}]\n"), 0o644)
	if _, err := config.Load(p); err == nil || !strings.Contains(err.Error(), "hashes") {
		t.Errorf("typo in a tree's enrich: %v", err)
	}
}
