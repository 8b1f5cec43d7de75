package action

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/semprop/semprop/internal/audit"
)

// DefaultSnapshotMax is the largest file the snapshot action copies by
// default.
const DefaultSnapshotMax = 64 << 20

func registerFileActions(r *Registry) {
	r.Register("snapshot", Type{New: newSnapshot, Args: map[string]ArgKind{"paths": ArgList, "max_file_size": ArgInt}, Required: []string{"paths"}})
	r.Register("quarantine", Type{New: newQuarantine, Args: map[string]ArgKind{"path": ArgString}, Required: []string{"path"}})
	r.Register("tag", Type{New: newTag, Args: map[string]ArgKind{"path": ArgString, "name": ArgString, "value": ArgString}, Required: []string{"path", "name"}})
}

func checkBeneath(env *Env, paths []string) ([]audit.Check, error) {
	var checks []audit.Check
	for _, p := range paths {
		if _, _, err := env.Roots.split(p); err != nil {
			checks = append(checks, audit.Check{Name: "beneath roots: " + p, OK: false, Detail: err.Error()})
			return checks, fmt.Errorf("%w: %w", ErrPrecondition, err)
		}
		checks = append(checks, audit.Check{Name: "beneath roots: " + p, OK: true})
	}
	return checks, nil
}

// --- snapshot ---

type snapshot struct {
	c     *Call
	paths []string
	max   int64
}

func newSnapshot(c *Call) (Action, error) {
	if c.Env.Snapshots == nil {
		return nil, fmt.Errorf("snapshot: no snapshot store configured: %w", ErrDisabled)
	}
	max, err := c.Args.Int("max_file_size", DefaultSnapshotMax)
	if err != nil {
		return nil, err
	}
	paths := c.Args.List("paths")
	if len(paths) == 0 {
		return nil, fmt.Errorf("snapshot: paths: nothing to copy: %w", ErrArgs)
	}
	return &snapshot{c: c, paths: paths, max: int64(max)}, nil
}

func (s *snapshot) Validate(context.Context) ([]audit.Check, json.RawMessage, error) {
	checks, err := checkBeneath(s.c.Env, s.paths)
	return checks, nil, err
}

func (s *snapshot) Execute(ctx context.Context, _ json.RawMessage) (json.RawMessage, error) {
	m := &Manifest{ID: SnapshotID(s.c.Key), Time: time.Now().UTC(), Rule: s.c.Rule, Key: s.c.Key}
	if s.c.Match != nil {
		m.Match = s.c.Match.ID
	}
	seen := map[string]bool{}
	for _, p := range s.paths {
		if seen[p] {
			continue
		}
		seen[p] = true
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, skip, err := s.copyOne(p)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", p, err)
		}
		if skip != "" {
			m.Skipped = append(m.Skipped, Skipped{Path: p, Reason: skip})
			continue
		}
		m.Files = append(m.Files, e)
	}
	if err := s.c.Env.Snapshots.Save(m); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// copyOne copies one file; a file that is gone, not regular or too large
// is skipped (with why), not an error.
func (s *snapshot) copyOne(p string) (FileEntry, string, error) {
	f, err := s.c.Env.Roots.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return FileEntry{}, "gone", nil
	case errors.Is(err, unix.ELOOP):
		return FileEntry{}, "a symbolic link", nil
	case err != nil:
		return FileEntry{}, "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return FileEntry{}, "", err
	}
	if !st.Mode().IsRegular() {
		return FileEntry{}, "not a regular file", nil
	}
	if s.max > 0 && st.Size() > s.max {
		return FileEntry{}, fmt.Sprintf("larger than %d bytes", s.max), nil
	}
	sum, n, err := s.c.Env.Snapshots.Put(f, s.max)
	if errors.Is(err, ErrTooLarge) {
		return FileEntry{}, fmt.Sprintf("grew larger than %d bytes", s.max), nil
	}
	if err != nil {
		return FileEntry{}, "", err
	}
	return FileEntry{Path: p, SHA256: sum, Size: n, Mode: st.Mode()}, "", nil
}

// Recover: the manifest is written last, so it says whether the
// snapshot was taken.
func (s *snapshot) Recover(_ context.Context, _ json.RawMessage) (json.RawMessage, bool, error) {
	m, err := s.c.Env.Snapshots.Manifest(SnapshotID(s.c.Key))
	if errors.Is(err, ErrNoSnapshot) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	res, err := json.Marshal(m)
	return res, true, err
}

// Rollback keeps the snapshot: a copy harms nothing and may be what
// restores a file.
func (s *snapshot) Rollback(context.Context, json.RawMessage, json.RawMessage) (json.RawMessage, error) {
	return json.RawMessage(`{"undone":false,"why":"snapshots are kept"}`), nil
}

// --- quarantine ---

type quarantine struct {
	c    *Call
	path string
}

type quarantineState struct {
	Path string `json:"path"`
	Name string `json:"name"` // in the quarantine directory
}

func newQuarantine(c *Call) (Action, error) {
	if c.Env.QuarantineDir == "" {
		return nil, fmt.Errorf("quarantine: no quarantine directory configured: %w", ErrDisabled)
	}
	p := strings.TrimSpace(c.Args.Str("path"))
	if p == "" {
		return nil, fmt.Errorf("quarantine: path: empty: %w", ErrArgs)
	}
	return &quarantine{c: c, path: p}, nil
}

func (q *quarantine) qdir() (*os.File, error) {
	if err := os.MkdirAll(q.c.Env.QuarantineDir, 0o700); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	return os.Open(q.c.Env.QuarantineDir)
}

func (q *quarantine) Validate(context.Context) ([]audit.Check, json.RawMessage, error) {
	checks, err := checkBeneath(q.c.Env, []string{q.path})
	if err != nil {
		return checks, nil, err
	}
	parent, base, err := q.c.Env.Roots.OpenParent(q.path)
	if err != nil {
		checks = append(checks, audit.Check{Name: "exists", Detail: err.Error()})
		return checks, nil, fmt.Errorf("%w: %w", ErrPrecondition, err)
	}
	defer parent.Close()
	var st unix.Stat_t
	if err := unix.Fstatat(int(parent.Fd()), base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		checks = append(checks, audit.Check{Name: "exists", Detail: err.Error()})
		return checks, nil, fmt.Errorf("%w: %s: %w", ErrPrecondition, q.path, err)
	}
	checks = append(checks, audit.Check{Name: "exists", OK: true})
	qd, err := q.qdir()
	if err != nil {
		return checks, nil, err
	}
	defer qd.Close()
	var qst unix.Stat_t
	if err := unix.Fstat(int(qd.Fd()), &qst); err != nil {
		return checks, nil, fmt.Errorf("quarantine: %w", err)
	}
	if qst.Dev != st.Dev {
		checks = append(checks, audit.Check{Name: "same file system as the quarantine directory", Detail: q.c.Env.QuarantineDir})
		return checks, nil, fmt.Errorf("%w: %s is not on the file system of %s", ErrPrecondition, q.path, q.c.Env.QuarantineDir)
	}
	checks = append(checks, audit.Check{Name: "same file system as the quarantine directory", OK: true})
	state, _ := json.Marshal(quarantineState{Path: q.path, Name: SnapshotID(q.c.Key) + "-" + filepath.Base(q.path)})
	return checks, state, nil
}

func (q *quarantine) state(raw json.RawMessage) (quarantineState, error) {
	var s quarantineState
	if err := json.Unmarshal(raw, &s); err != nil || s.Name == "" || strings.Contains(s.Name, "/") {
		return s, fmt.Errorf("quarantine: bad state %s: %w", raw, ErrArgs)
	}
	return s, nil
}

// present reports whether name exists in dir.
func present(dir *os.File, name string) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return err == nil, err
}

func (q *quarantine) Execute(_ context.Context, raw json.RawMessage) (json.RawMessage, error) {
	s, err := q.state(raw)
	if err != nil {
		return nil, err
	}
	parent, base, err := q.c.Env.Roots.OpenParent(s.Path)
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	qd, err := q.qdir()
	if err != nil {
		return nil, err
	}
	defer qd.Close()
	if err := unix.Renameat2(int(parent.Fd()), base, int(qd.Fd()), s.Name, unix.RENAME_NOREPLACE); err != nil {
		return nil, fmt.Errorf("quarantine %s: %w", s.Path, err)
	}
	if err := qd.Sync(); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	return json.Marshal(map[string]string{"from": s.Path, "to": filepath.Join(q.c.Env.QuarantineDir, s.Name)})
}

// Recover: the file is in the quarantine directory and not at its path:
// it was moved.
func (q *quarantine) Recover(_ context.Context, raw json.RawMessage) (json.RawMessage, bool, error) {
	s, err := q.state(raw)
	if err != nil {
		return nil, false, err
	}
	qd, err := q.qdir()
	if err != nil {
		return nil, false, err
	}
	defer qd.Close()
	in, err := present(qd, s.Name)
	if err != nil || !in {
		return nil, false, err
	}
	res, _ := json.Marshal(map[string]string{"from": s.Path, "to": filepath.Join(q.c.Env.QuarantineDir, s.Name)})
	return res, true, nil
}

// Rollback moves the file back, unless its path was taken since.
func (q *quarantine) Rollback(_ context.Context, raw, _ json.RawMessage) (json.RawMessage, error) {
	s, err := q.state(raw)
	if err != nil {
		return nil, err
	}
	parent, base, err := q.c.Env.Roots.OpenParent(s.Path)
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	qd, err := q.qdir()
	if err != nil {
		return nil, err
	}
	defer qd.Close()
	in, err := present(qd, s.Name)
	if err != nil {
		return nil, err
	}
	back, err := present(parent, base)
	if err != nil {
		return nil, err
	}
	if !in && back {
		return json.RawMessage(`{"undone":true,"already":true}`), nil // a rollback before a crash did it
	}
	if !in {
		return nil, fmt.Errorf("quarantine rollback: %s gone from the quarantine directory", s.Name)
	}
	if err := unix.Renameat2(int(qd.Fd()), s.Name, int(parent.Fd()), base, unix.RENAME_NOREPLACE); err != nil {
		return nil, fmt.Errorf("quarantine rollback %s (kept as %s): %w", s.Path, filepath.Join(q.c.Env.QuarantineDir, s.Name), err)
	}
	if err := unix.Fsync(int(qd.Fd())); err != nil {
		return nil, fmt.Errorf("quarantine rollback: %w", err)
	}
	return json.RawMessage(`{"undone":true}`), nil
}

// --- tag ---

type tag struct {
	c          *Call
	path, name string
	value      string
}

type tagState struct {
	Had   bool   `json:"had"`
	Prior string `json:"prior,omitempty"`
}

func newTag(c *Call) (Action, error) {
	name := c.Args.Str("name")
	if !strings.HasPrefix(name, "user.") {
		name = "user." + name
	}
	if name == "user." || strings.ContainsAny(name, "\x00") {
		return nil, fmt.Errorf("tag: name %q: %w", name, ErrArgs)
	}
	p := strings.TrimSpace(c.Args.Str("path"))
	if p == "" {
		return nil, fmt.Errorf("tag: path: empty: %w", ErrArgs)
	}
	return &tag{c: c, path: p, name: name, value: c.Args.Str("value")}, nil
}

func (t *tag) open() (*os.File, error) {
	return t.c.Env.Roots.Open(t.path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
}

func getxattr(f *os.File, name string) (string, bool, error) {
	buf := make([]byte, 4096)
	n, err := unix.Fgetxattr(int(f.Fd()), name, buf)
	if errors.Is(err, unix.ENODATA) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return string(buf[:n]), true, nil
}

func (t *tag) Validate(context.Context) ([]audit.Check, json.RawMessage, error) {
	checks, err := checkBeneath(t.c.Env, []string{t.path})
	if err != nil {
		return checks, nil, err
	}
	f, err := t.open()
	if err != nil {
		checks = append(checks, audit.Check{Name: "exists", Detail: err.Error()})
		return checks, nil, fmt.Errorf("%w: %w", ErrPrecondition, err)
	}
	defer f.Close()
	checks = append(checks, audit.Check{Name: "exists", OK: true})
	prior, had, err := getxattr(f, t.name)
	if err != nil {
		checks = append(checks, audit.Check{Name: "xattrs supported", Detail: err.Error()})
		return checks, nil, fmt.Errorf("%w: %s: %w", ErrPrecondition, t.path, err)
	}
	state, _ := json.Marshal(tagState{Had: had, Prior: prior})
	return checks, state, nil
}

func (t *tag) Execute(context.Context, json.RawMessage) (json.RawMessage, error) {
	f, err := t.open()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := unix.Fsetxattr(int(f.Fd()), t.name, []byte(t.value), 0); err != nil {
		return nil, fmt.Errorf("tag %s: %w", t.path, err)
	}
	return json.Marshal(map[string]string{"path": t.path, "name": t.name, "value": t.value})
}

// Recover: setting the attribute again is harmless, so the executor
// simply runs it.
func (t *tag) Recover(context.Context, json.RawMessage) (json.RawMessage, bool, error) {
	return nil, false, nil
}

func (t *tag) Rollback(_ context.Context, raw, _ json.RawMessage) (json.RawMessage, error) {
	var s tagState
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("tag: bad state: %w", err)
	}
	f, err := t.open()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if s.Had {
		err = unix.Fsetxattr(int(f.Fd()), t.name, []byte(s.Prior), 0)
	} else if err = unix.Fremovexattr(int(f.Fd()), t.name); errors.Is(err, unix.ENODATA) {
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("tag rollback %s: %w", t.path, err)
	}
	return json.RawMessage(`{"undone":true}`), nil
}
