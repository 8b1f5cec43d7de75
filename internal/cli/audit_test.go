package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/action"
	"github.com/semprop/semprop/internal/audit"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, nil, &out, &errb)
	return code, out.String(), errb.String()
}

func TestAuditVerifyAndLs(t *testing.T) {
	data := t.TempDir()
	l, err := audit.Open(filepath.Join(data, "audit"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range []string{"a", "b", "a"} {
		if err := l.Append(&audit.Record{Kind: audit.KindDone, Rule: r, Key: r + "/m/" + string(rune('0'+i)), Type: "tag"}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if code, out, errs := runCLI("audit", "verify", data); code != 0 || !strings.Contains(out, "ok: 3 records") {
		t.Errorf("verify: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ := runCLI("audit", "ls", data, "--rule", "a")
	if code != 0 || strings.Count(out, "a/m/") != 2 || strings.Contains(out, "b/m/") {
		t.Errorf("ls --rule a: exit %d\n%s", code, out)
	}
	if code, out, _ := runCLI("audit", "ls", data, "--json", "--limit", "1"); code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"seq":3`) {
		t.Errorf("ls --json --limit 1: exit %d\n%s", code, out)
	}
	if code, _, _ := runCLI("audit", "ls", data, "--since", "someday"); code == 0 {
		t.Error("ls --since someday succeeded")
	}
	p := filepath.Join(data, "audit", audit.FileName)
	b, _ := os.ReadFile(p)
	os.WriteFile(p, bytes.Replace(b, []byte(`"rule":"b"`), []byte(`"rule":"c"`), 1), 0o600)
	code, _, errs := runCLI("audit", "verify", data)
	if code != 1 || !strings.Contains(errs, "broken at record 3") {
		t.Errorf("verify tampered: exit %d, want 1 naming record 3\n%s", code, errs)
	}
}

func TestSnapshotsLsRestore(t *testing.T) {
	data := t.TempDir()
	st, err := action.OpenStore(filepath.Join(data, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "file.txt")
	sum, n, err := st.Put(strings.NewReader("original"), 0)
	if err != nil {
		t.Fatal(err)
	}
	id := action.SnapshotID("r/m/0")
	if err := st.Save(&action.Manifest{ID: id, Rule: "r", Key: "r/m/0", Files: []action.FileEntry{{Path: src, SHA256: sum, Size: n, Mode: 0o640}}}); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCLI("snapshots", "ls", data); code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "r/m/0") {
		t.Errorf("ls: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ := runCLI("snapshots", "ls", data, id); code != 0 || !strings.Contains(out, src) {
		t.Errorf("ls ID: exit %d\n%s", code, out)
	}
	if code, _, errs := runCLI("snapshots", "restore", data, id); code != 0 {
		t.Fatalf("restore: exit %d\n%s", code, errs)
	}
	if b, err := os.ReadFile(src); err != nil || string(b) != "original" {
		t.Errorf("restored %q, %v", b, err)
	}
	os.WriteFile(src, []byte("encrypted"), 0o644)
	if code, _, errs := runCLI("snapshots", "restore", data, id); code == 0 || !strings.Contains(errs, "exists") {
		t.Errorf("restore over an existing file: exit %d\n%s", code, errs)
	}
	to := t.TempDir()
	if code, _, errs := runCLI("snapshots", "restore", data, id, "--to", to); code != 0 {
		t.Errorf("restore --to: exit %d\n%s", code, errs)
	}
	if b, _ := os.ReadFile(filepath.Join(to, src)); string(b) != "original" {
		t.Errorf("restore --to wrote %q", b)
	}
	if code, _, _ := runCLI("snapshots", "restore", data, "nosuch"); code == 0 {
		t.Error("restore of an unknown snapshot succeeded")
	}
}

func TestSnapshotsPrune(t *testing.T) {
	data := t.TempDir()
	st, err := action.OpenStore(filepath.Join(data, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	for i, age := range []time.Duration{30 * 24 * time.Hour, time.Hour} {
		sum, n, err := st.Put(strings.NewReader(strings.Repeat("y", 10*(i+1))), 0)
		if err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-age)
		os.Chtimes(filepath.Join(st.Dir(), "objects", sum[:2], sum), old, old)
		if err := st.Save(&action.Manifest{ID: action.SnapshotID(age.String()), Time: old, Files: []action.FileEntry{{Path: "/f", SHA256: sum, Size: n}}}); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, errs := runCLI("snapshots", "prune", data); code == 0 || !strings.Contains(errs, "--older-than") {
		t.Errorf("prune without a bound: exit %d\n%s", code, errs)
	}
	if code, _, errs := runCLI("snapshots", "prune", data, "--max-size", "ten"); code == 0 || !strings.Contains(errs, "max-size") {
		t.Errorf("prune --max-size ten: exit %d\n%s", code, errs)
	}
	code, out, errs := runCLI("snapshots", "prune", data, "--older-than", "168h", "--dry-run")
	if code != 0 || !strings.Contains(out, "would delete 1 snapshots and 1 copied files (10 B)") {
		t.Errorf("dry run: exit %d\n%s%s", code, out, errs)
	}
	if ms, _ := st.List(); len(ms) != 2 {
		t.Fatalf("the dry run deleted: %d snapshots left", len(ms))
	}
	code, out, errs = runCLI("snapshots", "prune", data, "--older-than", "168h", "--json")
	var res action.PruneResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Snapshots != 1 || res.Objects != 1 || res.Kept != 1 || res.KeptBytes != 20 {
		t.Errorf("prune --json: exit %d\n%s%s", code, out, errs)
	}
	if ms, _ := st.List(); len(ms) != 1 || ms[0].ID != action.SnapshotID(time.Hour.String()) {
		t.Errorf("after prune: %v", ms)
	}
}
