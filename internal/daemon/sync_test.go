package daemon

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/config"
)

// TestSyncBetweenDaemons: two daemons, each watching its own copy of a
// tree named docs and listing the other as a peer, converge on the file
// state; GET /v1/state on one shows a file written under the other.
func TestSyncBetweenDaemons(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for fanotify")
	}
	freeAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	addrs := []string{freeAddr(), freeAddr()}
	dirs := make([]string, 2)
	urls := make([]string, 2)
	for i := range 2 {
		dirs[i] = filepath.Join(t.TempDir(), "copy")
		os.MkdirAll(dirs[i], 0o755)
		c := defaults(t)
		c.Listen = addrs[i]
		c.Watch = []config.Tree{{Name: "docs", Path: dirs[i]}}
		c.Sync.Name = []string{"laptop", "server"}[i]
		c.Sync.Peers = []string{"http://" + addrs[1-i]}
		c.Sync.Interval = 100 * time.Millisecond
		_, urls[i] = startT(t, c)
	}
	if err := os.WriteFile(filepath.Join(dirs[0], "notes.md"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	var st struct {
		Entries []struct {
			Tree, Path string
			Versions   []struct{ Size int64 }
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		getJSON(t, urls[1]+"/v1/state?tree=docs&path=**", &st)
		if len(st.Entries) == 1 && st.Entries[0].Path == "notes.md" && len(st.Entries[0].Versions) == 1 && st.Entries[0].Versions[0].Size == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server's state of docs: %+v, want notes.md of 5 bytes from the laptop", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
