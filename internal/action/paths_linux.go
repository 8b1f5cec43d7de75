package action

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Roots are the directories actions may touch. A Roots is immutable and
// safe for concurrent use.
type Roots struct {
	dirs []string // cleaned, absolute, symbolic links resolved; longest first
}

// NewRoots returns roots for dirs (absolute paths of existing directories).
func NewRoots(dirs ...string) (*Roots, error) {
	r := &Roots{}
	for _, d := range dirs {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("action: root %q: want an absolute path", d)
		}
		real, err := filepath.EvalSymlinks(d)
		if err != nil {
			return nil, fmt.Errorf("action: root: %w", err)
		}
		r.dirs = append(r.dirs, filepath.Clean(real))
	}
	slices.SortFunc(r.dirs, func(a, b string) int { return len(b) - len(a) })
	return r, nil
}

// Dirs returns the roots.
func (r *Roots) Dirs() []string { return slices.Clone(r.dirs) }

// split finds the root that path lies under, lexically. A relative path,
// or one with a .. element, is refused.
func (r *Roots) split(path string) (root, rel string, err error) {
	if r == nil || len(r.dirs) == 0 {
		return "", "", fmt.Errorf("%q: no roots configured: %w", path, ErrOutsideRoots)
	}
	if !filepath.IsAbs(path) {
		return "", "", fmt.Errorf("%q: want an absolute path: %w", path, ErrOutsideRoots)
	}
	for _, el := range strings.Split(path, "/") {
		if el == ".." {
			return "", "", fmt.Errorf("%q: .. in a path: %w", path, ErrOutsideRoots)
		}
	}
	p := filepath.Clean(path)
	for _, d := range r.dirs {
		if p == d {
			return d, ".", nil
		}
		if strings.HasPrefix(p, d+"/") || d == "/" {
			return d, strings.TrimPrefix(strings.TrimPrefix(p, d), "/"), nil
		}
	}
	return "", "", fmt.Errorf("%q: %w", path, ErrOutsideRoots)
}

// Open opens path beneath its root with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_MAGICLINKS): no step of the resolution, symbolic links
// included, may leave the root.
func (r *Roots) Open(path string, flags int, mode uint32) (*os.File, error) {
	root, rel, err := r.split(path)
	if err != nil {
		return nil, err
	}
	return openBeneath(root, rel, flags, mode, path)
}

func openBeneath(root, rel string, flags int, mode uint32, name string) (*os.File, error) {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("action: root %s: %w", root, err)
	}
	defer unix.Close(rfd)
	how := &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Mode: uint64(mode),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS}
	if flags&unix.O_CREAT == 0 {
		how.Mode = 0
	}
	for {
		fd, err := unix.Openat2(rfd, rel, how)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if errors.Is(err, unix.EXDEV) {
			return nil, fmt.Errorf("%q: resolves outside its root %s: %w", name, root, ErrOutsideRoots)
		}
		if err != nil {
			return nil, &os.PathError{Op: "openat2", Path: name, Err: err}
		}
		return os.NewFile(uintptr(fd), name), nil
	}
}

// OpenParent opens the directory holding path beneath its root (as an
// O_PATH descriptor for *at calls) and returns it with the last element
// of path. The root itself has no parent here.
func (r *Roots) OpenParent(path string) (*os.File, string, error) {
	root, rel, err := r.split(path)
	if err != nil {
		return nil, "", err
	}
	if rel == "." {
		return nil, "", fmt.Errorf("%q: is a root: %w", path, ErrOutsideRoots)
	}
	dir, base := filepath.Split(rel)
	if dir == "" {
		dir = "."
	}
	f, err := openBeneath(root, dir, unix.O_PATH|unix.O_DIRECTORY, 0, path)
	if err != nil {
		return nil, "", err
	}
	return f, base, nil
}
