package action

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pruneStore makes a store with one snapshot per content of contents,
// taken an hour apart (the first oldest), each object written an hour
// before now.
func pruneStore(t *testing.T, contents ...string) (*Store, []string, time.Time) {
	t.Helper()
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	var ids []string
	for i, c := range contents {
		sum, n, err := s.Put(strings.NewReader(c), 0)
		if err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-time.Hour)
		if err := os.Chtimes(s.objectPath(sum), old, old); err != nil {
			t.Fatal(err)
		}
		id := SnapshotID(fmt.Sprint("snap", i))
		m := &Manifest{ID: id, Time: now.Add(time.Duration(i-len(contents)) * time.Hour),
			Files: []FileEntry{{Path: fmt.Sprintf("/d/f%d", i), SHA256: sum, Size: n, Mode: 0o644}}}
		if err := s.Save(m); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return s, ids, now
}

func objectCount(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(s.dir, "objects"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func TestPruneByAge(t *testing.T) {
	// Snapshots 3h, 2h and 1h old; the first two share their content.
	s, ids, now := pruneStore(t, "aaaa", "aaaa", "bbbbbb")
	res, err := s.Prune(PruneOptions{Before: now.Add(-150 * time.Minute), Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Snapshots != 1 || res.Kept != 2 || res.Objects != 0 {
		t.Fatalf("prune older than 2.5h: %+v; want 1 snapshot deleted, 2 kept, no object (the second still references it)", res)
	}
	if _, err := s.Manifest(ids[0]); err == nil {
		t.Error("the oldest snapshot is still there")
	}
	res, err = s.Prune(PruneOptions{Before: now.Add(-90 * time.Minute), Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Snapshots != 1 || res.Kept != 1 || res.Objects != 1 || res.Bytes != 4 || res.KeptBytes != 6 {
		t.Fatalf("prune older than 1.5h: %+v; want 1 snapshot and its 4-byte object deleted, 6 bytes kept", res)
	}
	if got := objectCount(t, s); got != 1 {
		t.Errorf("%d objects left, want 1", got)
	}
	// What is left restores.
	to := t.TempDir()
	if _, err := s.Restore(ids[2], RestoreOptions{To: to}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(to, "d", "f2")); string(b) != "bbbbbb" {
		t.Errorf("restored %q", b)
	}
}

func TestPruneBySize(t *testing.T) {
	s, ids, _ := pruneStore(t, "0123456789", "abcdefghij", "ABCDEFGHIJ")
	res, err := s.Prune(PruneOptions{MaxSize: 25, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Snapshots != 1 || res.Objects != 1 || objectCount(t, s) != 3 {
		t.Fatalf("dry run: %+v, %d objects; want 1 snapshot and 1 object reported, nothing deleted", res, objectCount(t, s))
	}
	res, err = s.Prune(PruneOptions{MaxSize: 25})
	if err != nil {
		t.Fatal(err)
	}
	if res.Snapshots != 1 || res.KeptBytes != 20 || res.Bytes != 10 {
		t.Fatalf("prune to 25 bytes: %+v; want the oldest deleted, 20 bytes kept", res)
	}
	if _, err := s.Manifest(ids[0]); err == nil {
		t.Error("the oldest snapshot survived the size bound")
	}
	if _, err := s.Manifest(ids[1]); err != nil {
		t.Errorf("a newer snapshot was deleted: %v", err)
	}
}

func TestPruneKeepsYoungAndUnreadable(t *testing.T) {
	s, _, now := pruneStore(t, "old content")
	// An object no manifest references yet, written just now: a snapshot
	// being taken.
	young, _, err := s.Put(strings.NewReader("being taken"), 0)
	if err != nil {
		t.Fatal(err)
	}
	// An old object stored again is young again.
	again, _, err := s.Put(strings.NewReader("old content"), 0)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Prune(PruneOptions{Before: now, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Snapshots != 1 || res.Objects != 0 {
		t.Fatalf("%+v: want the snapshot deleted and both young objects kept", res)
	}
	for _, sum := range []string{young, again} {
		if _, err := os.Stat(s.objectPath(sum)); err != nil {
			t.Errorf("object %s: %v", sum[:8], err)
		}
	}
	// Past the grace period they go, unless a manifest cannot be read.
	if err := os.WriteFile(filepath.Join(s.dir, "manifests", SnapshotID("x")+".json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(DefaultPruneGrace + time.Minute)
	res, err = s.Prune(PruneOptions{Now: later})
	if err != nil {
		t.Fatal(err)
	}
	if !res.SweepSkipped || res.Unreadable != 1 || objectCount(t, s) != 2 {
		t.Fatalf("with an unreadable manifest: %+v, %d objects; want the sweep skipped", res, objectCount(t, s))
	}
	os.Remove(filepath.Join(s.dir, "manifests", SnapshotID("x")+".json"))
	res, err = s.Prune(PruneOptions{Now: later})
	if err != nil {
		t.Fatal(err)
	}
	if res.Objects != 2 || objectCount(t, s) != 0 {
		t.Fatalf("after the grace period: %+v, %d objects left; want both unreferenced objects deleted", res, objectCount(t, s))
	}
}
