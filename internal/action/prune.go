package action

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/semprop/semprop/internal/atomicfile"
)

// DefaultPruneGrace is how long Prune leaves an object no snapshot
// references, and a temporary file, alone: long enough for a snapshot
// being taken (its objects are written before its manifest) to be saved.
const DefaultPruneGrace = 10 * time.Minute

// PruneOptions say which snapshots Prune deletes.
type PruneOptions struct {
	// Before deletes the snapshots taken before it (zero: none by age).
	Before time.Time
	// MaxSize then deletes the oldest snapshots until the objects the
	// others reference total at most MaxSize bytes (0: no bound).
	MaxSize int64
	// Grace keeps unreferenced objects and temporary files younger than
	// it; 0 means DefaultPruneGrace.
	Grace time.Duration
	// DryRun reports what would be deleted and deletes nothing.
	DryRun bool
	// Now is the time Grace counts back from (zero: time.Now()).
	Now time.Time
}

// PruneResult says what Prune deleted (or would delete, in a dry run)
// and what is left.
type PruneResult struct {
	Snapshots    int   `json:"snapshots_deleted"`
	Objects      int   `json:"objects_deleted"`
	Bytes        int64 `json:"bytes_deleted"`
	Kept         int   `json:"snapshots_kept"`
	KeptBytes    int64 `json:"bytes_kept"` // of the objects the kept snapshots reference
	Unreadable   int   `json:"unreadable,omitempty"`
	SweepSkipped bool  `json:"sweep_skipped,omitempty"` // an unreadable manifest: no object was deleted
}

// Prune deletes snapshots by age and then by size, oldest first, and then
// the objects no remaining snapshot references. A manifest it cannot read
// is kept, and then no object is deleted at all (the manifest might
// reference any of them). It is safe to run beside snapshots being taken:
// an object is deleted only once it is older than the grace period, and Put
// refreshes the time of an object it finds already stored.
func (s *Store) Prune(o PruneOptions) (PruneResult, error) {
	var res PruneResult
	if o.Grace <= 0 {
		o.Grace = DefaultPruneGrace
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	ms, unreadable, err := s.readAll()
	if err != nil {
		return res, err
	}
	res.Unreadable = unreadable
	refs := make(map[string]int)   // object -> kept snapshots that reference it
	size := make(map[string]int64) // object -> its size
	var total int64
	// ref adds (d = 1) or takes away (d = -1) m's references, keeping
	// total the size of the objects referenced at least once.
	ref := func(m *Manifest, d int) {
		for _, sum := range m.objects() {
			refs[sum] += d
			switch {
			case d > 0 && refs[sum] == 1:
				total += size[sum]
			case d < 0 && refs[sum] == 0:
				total -= size[sum]
				delete(refs, sum)
			}
		}
	}
	for _, m := range ms {
		for _, f := range m.Files {
			size[f.SHA256] = f.Size
		}
	}
	keep := ms[:0:0]
	var drop []*Manifest
	for _, m := range ms {
		if !o.Before.IsZero() && m.Time.Before(o.Before) {
			drop = append(drop, m)
			continue
		}
		keep = append(keep, m)
		ref(m, 1)
	}
	for o.MaxSize > 0 && total > o.MaxSize && len(keep) > 0 {
		ref(keep[0], -1)
		drop = append(drop, keep[0])
		keep = keep[1:]
	}
	res.Snapshots, res.Kept, res.KeptBytes = len(drop), len(keep), total
	if !o.DryRun {
		for _, m := range drop {
			if err := os.Remove(filepath.Join(s.dir, "manifests", m.ID+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return res, fmt.Errorf("action: prune: %w", err)
			}
		}
		if len(drop) > 0 {
			if err := atomicfile.SyncDir(filepath.Join(s.dir, "manifests")); err != nil {
				return res, fmt.Errorf("action: prune: %w", err)
			}
		}
	}
	if unreadable > 0 {
		res.SweepSkipped = true
		return res, nil
	}
	cutoff := o.Now.Add(-o.Grace)
	err = filepath.WalkDir(filepath.Join(s.dir, "objects"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name := d.Name()
		if !hashRE.MatchString(name) || refs[name] > 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			return nil // gone meanwhile, or young: perhaps a snapshot being taken
		}
		res.Objects++
		res.Bytes += info.Size()
		if o.DryRun {
			return nil
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("action: prune: %w", err)
	}
	// Temporary files a crash left behind.
	ents, _ := os.ReadDir(filepath.Join(s.dir, "tmp"))
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.ModTime().Before(cutoff) && !o.DryRun {
			_ = os.Remove(filepath.Join(s.dir, "tmp", e.Name()))
		}
	}
	return res, nil
}

// objects returns the distinct objects m references.
func (m *Manifest) objects() []string {
	out := make([]string, 0, len(m.Files))
	for _, f := range m.Files {
		out = append(out, f.SHA256)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// readAll reads every manifest, oldest first, counting those it cannot
// read instead of failing.
func (s *Store) readAll() ([]*Manifest, int, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "manifests"))
	if err != nil {
		return nil, 0, fmt.Errorf("action: snapshots: %w", err)
	}
	var (
		out        []*Manifest
		unreadable int
	)
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !idRE.MatchString(id) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.dir, "manifests", e.Name()))
		var m Manifest
		if err == nil {
			err = json.Unmarshal(data, &m)
		}
		if err != nil || m.ID != id {
			if !errors.Is(err, fs.ErrNotExist) {
				unreadable++
			}
			continue
		}
		out = append(out, &m)
	}
	slices.SortStableFunc(out, func(a, b *Manifest) int { return a.Time.Compare(b.Time) })
	return out, unreadable, nil
}
