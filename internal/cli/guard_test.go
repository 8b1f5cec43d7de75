package cli

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/api"
	"github.com/semprop/semprop/internal/guard"
)

// TestGuardCmd: guard ls shows a quarantined process and its refusals;
// guard release takes it off; a second release fails.
func TestGuardCmd(t *testing.T) {
	g, _ := guard.New(guard.Options{Config: guard.DefaultConfig()})
	p := exec.Command("sleep", "60")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Process.Kill(); p.Wait() })
	pid := strconv.Itoa(p.Process.Pid)
	g.Quarantine(int32(p.Process.Pid), 5, false, time.Now().Add(time.Hour), "ransom/m/0")
	g.Refuse(int32(p.Process.Pid), 5, "unlink")
	srv := api.New(api.Options{})
	g.Register(srv)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	run := func(args ...string) (int, string) {
		cmd := newGuardCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append(args, "--server", hs.URL))
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			return 1, out.String() + err.Error()
		}
		return 0, out.String()
	}
	if code, out := run("ls"); code != 0 || !strings.Contains(out, pid+"  ") || !strings.Contains(out, "ransom/m/0") || !strings.Contains(out, "operations refused: unlink 1") {
		t.Errorf("guard ls: exit %d:\n%s", code, out)
	}
	if code, out := run("ls", "--json"); code != 0 || !strings.Contains(out, `"pid": `+pid) {
		t.Errorf("guard ls --json: exit %d:\n%s", code, out)
	}
	if code, out := run("release", pid); code != 0 || strings.Contains(out, "ransom/m/0") {
		t.Errorf("guard release: exit %d:\n%s", code, out)
	}
	if code, out := run("release", pid); code == 0 || !strings.Contains(out, "404") {
		t.Errorf("second release: exit %d, want a 404:\n%s", code, out)
	}
	if code, _ := run("release"); code == 0 {
		t.Error("release without a pid succeeded")
	}
}

// TestSnapshotsLsPath: --path lists the guard's copies of the files under
// a path, with the operation and the snapshot holding each.
func TestSnapshotsLsPath(t *testing.T) {
	data := t.TempDir()
	st, err := action.OpenStore(filepath.Join(data, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	sum, n, _ := st.Put(strings.NewReader("v1"), 0)
	files := []action.FileEntry{{Path: "/mnt/docs/a.txt", SHA256: sum, Size: n, Op: "unlink"}, {Path: "/mnt/other/b.txt", SHA256: sum, Size: n, Op: "rename"}}
	if err := st.Save(&action.Manifest{ID: strings.Repeat("ab", 16), Rule: guard.Rule, Files: files}); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI("snapshots", "ls", data, "--path", "/mnt/docs")
	if code != 0 || !strings.Contains(out, "/mnt/docs/a.txt") || !strings.Contains(out, "unlink") || strings.Contains(out, "b.txt") {
		t.Errorf("ls --path: exit %d\n%s", code, out)
	}
}
