package daemon

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/config"
)

// TestGuardQuarantinesThroughDaemon: a rule's quarantine-process action,
// run by the daemon, puts the matching process on the guard list, and the
// daemon's mount refuses that process's next change while reads work.
func TestGuardQuarantinesThroughDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for FUSE mounts")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("needs /dev/fuse")
	}
	root := t.TempDir()
	backing, mnt := filepath.Join(root, "b"), filepath.Join(root, "m")
	if err := os.MkdirAll(backing, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(backing, "keep.txt"), []byte("keep\n"), 0o644)
	rf := filepath.Join(root, "r.yaml")
	os.WriteFile(rf, []byte(`rules:
  - name: locked
    when: 'type == "fs.create" && subject endsWith ".locked"'
    by: pid
    actions:
      - {type: quarantine-process, for: 1m}
`), 0o644)
	c := defaults(t)
	c.Mount = []config.Tree{{Backing: backing, Mountpoint: mnt}}
	c.Rules = []string{rf}
	_, url := startT(t, c)
	// One process (the shell, with builtins only): creates a .locked
	// file, waits for the rule to act, then reads (allowed) and writes
	// (refused).
	script := `: > "$1/a.locked" || exit 10
i=0
while [ $i -lt 100 ]; do
  i=$((i+1))
  sleep 0.1
  if ! echo x > "$1/probe$i" 2>/dev/null; then
    read line < "$1/keep.txt" || exit 12
    [ "$line" = keep ] || exit 13
    exit 0
  fi
done
exit 11`
	out, err := exec.Command("sh", "-c", script, "sh", mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("the quarantined process was not refused (or could not read): %v %s", err, out)
	}
	// Another process is not listed.
	if err := os.WriteFile(filepath.Join(mnt, "other.txt"), []byte("x"), 0o644); err != nil {
		t.Fatalf("an unlisted process was refused: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var list struct {
			Entries []struct{ PID int }
		}
		getJSON(t, url+"/v1/guard", &list)
		if len(list.Entries) == 1 || time.Now().After(deadline) {
			if len(list.Entries) != 1 {
				t.Fatalf("guard list %+v, want the one process", list)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}
