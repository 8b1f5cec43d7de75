package guard

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

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
	sum, n, err := g.store.PutUnsynced(f, int64(g.cfg.MaxFileSize))
	if errors.Is(err, action.ErrTooLarge) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	e := action.FileEntry{Path: path, SHA256: sum, Size: n, Mode: os.FileMode(st.Mode & 0o777), Op: op, Time: g.now().UTC()}
	g.pendMu.Lock()
	g.pending = append(g.pending, e)
	full := len(g.pending) >= maxPending
	g.pendMu.Unlock()
	g.preserved.Add(1)
	g.preservedBytes.Add(uint64(n))
	if full {
		g.Flush()
	}
	return true, nil
}

// maxPending is how many copies wait for a flush at most: the one that
// fills the batch flushes it.
const maxPending = 1024

// FlushInterval is how often Run makes the copies of snapshot before
// destroy durable and lists them in a manifest.
const FlushInterval = 200 * time.Millisecond

// Flush makes the copies made since the last flush durable (syncfs of the
// store) and writes one manifest listing them, with the operation and
// the time of each. Run calls it every FlushInterval and when it returns.
func (g *Guard) Flush() {
	g.flushMu.Lock()
	defer g.flushMu.Unlock()
	g.pendMu.Lock()
	files := g.pending
	g.pending = nil
	g.pendMu.Unlock()
	if len(files) == 0 {
		return
	}
	err := g.store.Sync()
	if err == nil {
		var id [16]byte
		rand.Read(id[:])
		m := &action.Manifest{ID: hex.EncodeToString(id[:]), Time: files[0].Time, Rule: Rule,
			Key: fmt.Sprintf("before destroy: %d files", len(files)), Files: files}
		err = g.store.Save(m)
	}
	if err != nil {
		g.preserveFailed.Add(uint64(len(files)))
		g.log.Error("guard: cannot record the snapshots before destroy", "files", len(files), "err", err)
	}
}
