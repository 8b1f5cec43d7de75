package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/semprop/semprop/internal/action"
)

// TestSnapshotsPruned: a daemon whose rules may take snapshots deletes,
// as it starts, the snapshots older than actions.snapshot_retention and
// the objects only they referenced, and keeps the younger ones.
func TestSnapshotsPruned(t *testing.T) {
	dir := t.TempDir()
	rf := filepath.Join(dir, "r.yaml")
	if err := os.WriteFile(rf, []byte("rules:\n  - name: r\n    when: 'type == \"app.x\"'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := defaults(t)
	c.Rules = []string{rf}
	c.Actions.SnapshotRetention = 24 * time.Hour
	store, err := action.OpenStore(filepath.Join(c.Data, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var sums []string
	for i, age := range []time.Duration{48 * time.Hour, time.Hour} {
		sum, n, err := store.Put(strings.NewReader(strings.Repeat("x", i+1)), 0)
		if err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-age)
		os.Chtimes(filepath.Join(store.Dir(), "objects", sum[:2], sum), old, old)
		m := &action.Manifest{ID: action.SnapshotID(age.String()), Time: old, Files: []action.FileEntry{{Path: "/f", SHA256: sum, Size: n}}}
		if err := store.Save(m); err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sum)
	}
	_, url := startT(t, c)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ms, err := store.List()
		if err != nil {
			t.Fatal(err)
		}
		_, errOld := os.Stat(filepath.Join(store.Dir(), "objects", sums[0][:2], sums[0]))
		if len(ms) == 1 && os.IsNotExist(errOld) {
			if ms[0].ID != action.SnapshotID(time.Hour.String()) {
				t.Fatalf("kept %s, want the hour-old snapshot", ms[0].ID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %d snapshots, old object: %v; want the two-day-old snapshot and its object deleted", len(ms), errOld)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(store.Dir(), "objects", sums[1][:2], sums[1])); err != nil {
		t.Errorf("the kept snapshot's object: %v", err)
	}
	var h struct {
		Checks []struct {
			Name        string             `json:"name"`
			Status      string             `json:"status"`
			Measurement map[string]float64 `json:"measurement"`
		} `json:"checks"`
	}
	// The monitor runs the checks a moment after the start.
	for deadline := time.Now().Add(10 * time.Second); len(h.Checks) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		getJSON(t, url+"/v1/health", &h)
	}
	found := false
	for _, comp := range h.Checks {
		if comp.Name == "snapshots" {
			found = true
			if comp.Status != "ok" || comp.Measurement["snapshots"] != 1 || comp.Measurement["deleted"] != 1 {
				t.Errorf("health of snapshots: %+v; want ok, 1 kept, 1 deleted", comp)
			}
		}
	}
	if !found {
		t.Errorf("no snapshots check in /v1/health: %+v", h.Checks)
	}
}
