package action

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/semprop/semprop/internal/atomicfile"
)

// Store errors.
var (
	ErrNoSnapshot = errors.New("action: no such snapshot")
	ErrTooLarge   = errors.New("action: file larger than the snapshot limit")
	ErrExists     = errors.New("action: file exists (use force to overwrite)")
)

// Store is the content-addressed snapshot store: file contents under
// objects/ab/<sha256>, and one manifest per snapshot under
// manifests/<id>.json listing what was copied. It is safe for concurrent
// use (objects are written to temporary files and renamed into place).
type Store struct {
	dir string
}

// Manifest describes one snapshot.
type Manifest struct {
	ID      string      `json:"id"`
	Time    time.Time   `json:"time"`
	Rule    string      `json:"rule,omitempty"`
	Key     string      `json:"key,omitempty"` // idempotency key of the action that took it
	Match   string      `json:"match,omitempty"`
	Files   []FileEntry `json:"files"`
	Skipped []Skipped   `json:"skipped,omitempty"`
}

// FileEntry is one file of a snapshot.
type FileEntry struct {
	Path   string      `json:"path"`
	SHA256 string      `json:"sha256"`
	Size   int64       `json:"size"`
	Mode   os.FileMode `json:"mode"`
	// Op is the operation that was about to destroy the file, for the
	// guard's snapshots before destroy (unlink, rename, setattr, open).
	Op   string    `json:"op,omitempty"`
	Time time.Time `json:"time,omitzero"` // when the guard copied it
}

// Skipped is a path a snapshot did not copy, and why.
type Skipped struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

var (
	hashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	idRE   = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// OpenStore opens (or creates) the store in dir.
func OpenStore(dir string) (*Store, error) {
	for _, d := range []string{"objects", "manifests", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("action: snapshots: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// SnapshotID is the ID of the snapshot that the action with idempotency
// key key takes: the same key always names the same snapshot.
func SnapshotID(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:16])
}

func (s *Store) objectPath(sum string) string {
	return filepath.Join(s.dir, "objects", sum[:2], sum)
}

// Put copies r (at most max bytes; 0 for no limit) into the store and
// returns its SHA-256 and size; the object is durable when Put returns.
func (s *Store) Put(r io.Reader, max int64) (string, int64, error) {
	return s.put(r, max, true)
}

// PutUnsynced is Put without the fsyncs: the object is in place when it
// returns, and durable after the next Sync. For callers that copy many
// files and make them durable together.
func (s *Store) PutUnsynced(r io.Reader, max int64) (string, int64, error) {
	return s.put(r, max, false)
}

func (s *Store) put(r io.Reader, max int64, sync bool) (string, int64, error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "obj-*")
	if err != nil {
		return "", 0, fmt.Errorf("action: snapshot: %w", err)
	}
	defer os.Remove(tmp.Name()) // gone after the rename
	h := sha256.New()
	src := r
	if max > 0 {
		src = io.LimitReader(r, max+1)
	}
	n, err := io.Copy(io.MultiWriter(tmp, h), src)
	if err == nil && max > 0 && n > max {
		err = ErrTooLarge
	}
	if err == nil && sync {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("action: snapshot: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	dst := s.objectPath(sum)
	if _, err := os.Stat(dst); err == nil {
		// Stored already: now young again, so that Prune, which deletes
		// only old unreferenced objects, leaves it to the manifest about
		// to reference it.
		now := time.Now()
		_ = os.Chtimes(dst, now, now)
		return sum, n, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", 0, fmt.Errorf("action: snapshot: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", 0, fmt.Errorf("action: snapshot: %w", err)
	}
	if sync {
		if err := atomicfile.SyncDir(filepath.Dir(dst)); err != nil {
			return "", 0, fmt.Errorf("action: snapshot: %w", err)
		}
	}
	return sum, n, nil
}

// Object opens the object with the given SHA-256.
func (s *Store) Object(sum string) (*os.File, error) {
	if !hashRE.MatchString(sum) {
		return nil, fmt.Errorf("%w: object %q", ErrNoSnapshot, sum)
	}
	return os.Open(s.objectPath(sum))
}

// Save writes a manifest atomically and durably.
func (s *Store) Save(m *Manifest) error {
	if !idRE.MatchString(m.ID) {
		return fmt.Errorf("action: snapshot id %q: %w", m.ID, ErrArgs)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("action: snapshot: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(s.dir, "manifests", m.ID+".json"), data, 0o600); err != nil {
		return fmt.Errorf("action: snapshot: %w", err)
	}
	return nil
}

// Manifest reads the manifest of snapshot id.
func (s *Store) Manifest(id string) (*Manifest, error) {
	if !idRE.MatchString(id) {
		return nil, fmt.Errorf("%w: %q", ErrNoSnapshot, id)
	}
	data, err := os.ReadFile(filepath.Join(s.dir, "manifests", id+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoSnapshot, id)
	}
	if err != nil {
		return nil, fmt.Errorf("action: snapshot: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("action: snapshot %s: %w", id, err)
	}
	return &m, nil
}

// List returns every manifest, oldest first.
func (s *Store) List() ([]*Manifest, error) {
	ms, unreadable, err := s.readAll()
	if err == nil && unreadable > 0 {
		err = fmt.Errorf("action: snapshots: %d manifests cannot be read", unreadable)
	}
	return ms, err
}

// RestoreOptions say where and how Restore writes.
type RestoreOptions struct {
	// Paths restores only these (as recorded); all when empty.
	Paths []string
	// To, if set, is a directory under which the recorded absolute paths
	// are recreated (To + path) instead of at the paths themselves.
	To string
	// Force overwrites existing files.
	Force bool
}

// Restore writes the files of snapshot id back, each checked against its
// SHA-256, and returns the paths written.
func (s *Store) Restore(id string, o RestoreOptions) ([]string, error) {
	m, err := s.Manifest(id)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, f := range m.Files {
		if len(o.Paths) > 0 && !slices.Contains(o.Paths, f.Path) {
			continue
		}
		dst := f.Path
		if o.To != "" {
			dst = filepath.Join(o.To, filepath.Clean("/"+f.Path))
		}
		if err := s.restoreOne(f, dst, o.Force); err != nil {
			return done, err
		}
		done = append(done, dst)
	}
	return done, nil
}

func (s *Store) restoreOne(f FileEntry, dst string, force bool) error {
	src, err := s.Object(f.SHA256)
	if err != nil {
		return fmt.Errorf("action: restore %s: %w", f.Path, err)
	}
	defer src.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("action: restore: %w", err)
	}
	if _, err := os.Lstat(dst); err == nil && !force {
		return fmt.Errorf("action: restore %s: %w", dst, ErrExists)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".semprop-restore-*")
	if err != nil {
		return fmt.Errorf("action: restore: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), src)
	if err == nil && hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
		err = fmt.Errorf("object %s is corrupt", f.SHA256)
	}
	if err == nil {
		err = tmp.Chmod(f.Mode.Perm())
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		return fmt.Errorf("action: restore %s: %w", dst, err)
	}
	return nil
}
