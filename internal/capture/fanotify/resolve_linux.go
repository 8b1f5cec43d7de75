package fanotify

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxDirCache bounds the handle cache. The mark covers the whole file
// system, so unrelated directories are cached too (as "outside"); when the
// cache outgrows this bound it is cleared and refills on demand.
const maxDirCache = 1 << 16

// dirInfo is a cached directory: its path as of the last resolution or
// rename, and whether that path is Root or below it.
type dirInfo struct {
	path   string
	inside bool
}

// resolver maps directory file identifiers to paths with open_by_handle_at
// and a cache that follows directory renames and deletes. It is owned by the
// reader goroutine.
type resolver struct {
	mountFD int
	fds     *fdReserve
	t       *tracker // for inside()
	c       *counters
	cache   map[string]*dirInfo
	buf     []byte

	// graveyard delays the eviction of deleted directories: records of
	// their children may still be queued (or merged ahead of them), and
	// a deleted directory's handle can no longer be opened. Handles carry
	// a generation, so a stale entry is never confused with a new object.
	graveyard [graveyardLen]string
	graveNext int
}

const graveyardLen = 1024

func newResolver(mountFD int, fds *fdReserve, t *tracker, c *counters) *resolver {
	return &resolver{mountFD: mountFD, fds: fds, t: t, c: c, cache: make(map[string]*dirInfo), buf: make([]byte, unix.PathMax)}
}

// errGone says a directory handle names a directory that was deleted: its
// records describe something that no longer exists, not a loss.
var errGone = errors.New("fanotify: directory deleted")

// dir resolves a directory identifier. It fails with errGone when the
// directory was deleted (open_by_handle_at says ESTALE or ENOENT, or the
// path has " (deleted)"), with errBadRecord for a malformed identifier, and
// with another error (no descriptor, no memory, …) when it could not be
// resolved though it may well exist: the caller reports that as a loss.
func (r *resolver) dir(fid []byte) (*dirInfo, error) {
	if fid == nil {
		return nil, errBadRecord
	}
	if d, ok := r.cache[string(fid)]; ok {
		r.c.handleHits.Add(1)
		return d, nil
	}
	r.c.handleMisses.Add(1)
	p, err := r.open(fid)
	if err != nil {
		if err == errGone {
			r.c.stale.Add(1)
		} else {
			r.c.handleErrors.Add(1)
		}
		return nil, err
	}
	if len(r.cache) >= maxDirCache {
		clear(r.cache)
		r.c.cacheResets.Add(1)
	}
	d := &dirInfo{path: p, inside: r.t.inside(p)}
	r.cache[string(fid)] = d
	return d, nil
}

// open resolves fid to its current path without the cache.
func (r *resolver) open(fid []byte) (string, error) {
	typ, h, ok := handleOf(fid)
	if !ok || len(h) == 0 {
		return "", errBadRecord
	}
	fd, err := r.fds.open(func() (int, error) {
		return openByHandleAt(r.mountFD, unix.NewFileHandle(typ, h), unix.O_PATH|unix.O_CLOEXEC)
	})
	if err != nil {
		if err == unix.ESTALE || err == unix.ENOENT {
			return "", errGone
		}
		return "", fmt.Errorf("open_by_handle_at: %w", err)
	}
	n, err := unix.Readlink("/proc/self/fd/"+strconv.Itoa(fd), r.buf)
	r.fds.close(fd)
	switch {
	case err != nil:
		return "", fmt.Errorf("readlink of a resolved handle: %w", err)
	case n <= 0 || n >= len(r.buf):
		return "", fmt.Errorf("readlink of a resolved handle: %w", errPathLength)
	}
	p := string(r.buf[:n])
	if strings.HasSuffix(p, " (deleted)") {
		return "", errGone
	}
	// A path not starting with "/" names no directory in this mount
	// namespace's tree: it is not inside Root (inside says so).
	return p, nil
}

var errPathLength = errors.New("fanotify: path empty or longer than PATH_MAX")

// renamed updates the cache after the directory fid moved from oldPath to
// newPath: the directory itself and every cached directory below it.
func (r *resolver) renamed(fid []byte, oldPath, newPath string) {
	if d, ok := r.cache[string(fid)]; ok && fid != nil {
		d.path, d.inside = newPath, r.t.inside(newPath)
	}
	prefix := oldPath + "/"
	for _, d := range r.cache {
		if strings.HasPrefix(d.path, prefix) {
			d.path = newPath + d.path[len(oldPath):]
			d.inside = r.t.inside(d.path)
		} else if d.path == oldPath {
			d.path, d.inside = newPath, r.t.inside(newPath)
		}
	}
}

// learn caches the path of a directory just created, so that records of
// its children resolve even when it is gone by the time they are read.
func (r *resolver) learn(fid []byte, path string) {
	if fid == nil {
		return
	}
	if _, ok := r.cache[string(fid)]; ok {
		return
	}
	if len(r.cache) >= maxDirCache {
		clear(r.cache)
		r.c.cacheResets.Add(1)
	}
	r.cache[string(fid)] = &dirInfo{path: path, inside: r.t.inside(path)}
}

// forget evicts a deleted directory, after graveyardLen later deletes.
func (r *resolver) forget(fid []byte) {
	if fid == nil {
		return
	}
	if _, ok := r.cache[string(fid)]; !ok {
		return
	}
	if old := r.graveyard[r.graveNext]; old != "" {
		delete(r.cache, old)
	}
	r.graveyard[r.graveNext] = string(fid)
	r.graveNext = (r.graveNext + 1) % graveyardLen
}
