package guard

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/semprop/semprop/internal/action"
)

// The operations the mounts ask about, as Refuse and Preserve name them.
var opNames = [...]string{
	"create", "mkdir", "mknod", "symlink", "link", "unlink", "rmdir", "rename",
	"setattr", "open", "write", "setxattr", "removexattr", "fallocate", "copy_file_range", "other",
}

const numOps = len(opNames)

func opIndex(op string) int {
	for i, n := range opNames {
		if n == op {
			return i
		}
	}
	return numOps - 1
}

// Rule is the rule name of the manifests Preserve writes.
const Rule = "guard"

// Preserving reports whether Preserve should be called before an
// operation destroys a file.
func (g *Guard) Preserving() bool { return g.cfg.SnapshotBeforeDestroy }

// Preserve copies the regular file at backing (its path on the backing
// file system) into the snapshot store before op destroys it, and
// records it under path (its path under the mount) in a manifest of
// rule "guard". Empty files, files with more than one link (for unlink
// and rename, which then destroy no data), non-regular files and files
// larger than Config.MaxFileSize are skipped, and so is a file no longer
// than newSize (a truncate that cuts nothing). Errors are logged and
// counted; the caller goes ahead.
func (g *Guard) Preserve(backing, path, op string, newSize int64) {
	if !g.cfg.SnapshotBeforeDestroy || g.store == nil {
		return
	}
	copied, err := g.preserve(backing, path, op, newSize)
	switch {
	case err != nil:
		g.preserveFailed.Add(1)
		g.log.Warn("guard: snapshot before destroy failed; the operation goes ahead", "path", path, "op", op, "err", err)
	case !copied:
		g.preserveSkipped.Add(1)
	}
}

func (g *Guard) preserve(backing, path, op string, newSize int64) (bool, error) {
	f, err := os.OpenFile(backing, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
			return false, nil // nothing to keep: the operation fails or destroys a link
		}
		return false, err
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Size == 0 || st.Size <= newSize || st.Size > int64(g.cfg.MaxFileSize) {
		return false, nil
	}
	if st.Nlink > 1 && (op == "unlink" || op == "rename") {
		return false, nil
	}
	sum, n, err := g.store.Put(f, int64(g.cfg.MaxFileSize))
	if errors.Is(err, action.ErrTooLarge) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var id [16]byte
	rand.Read(id[:])
	m := &action.Manifest{ID: hex.EncodeToString(id[:]), Time: g.now().UTC(), Rule: Rule, Key: op + " " + path,
		Files: []action.FileEntry{{Path: path, SHA256: sum, Size: n, Mode: os.FileMode(st.Mode & 0o7777)}}}
	if err := g.store.Save(m); err != nil {
		return false, fmt.Errorf("manifest: %w", err)
	}
	g.preserved.Add(1)
	g.preservedBytes.Add(uint64(n))
	return true, nil
}
