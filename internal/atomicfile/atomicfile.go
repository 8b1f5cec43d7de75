// Package atomicfile replaces small files so that a crash leaves either
// the old content or the new one, never a mix: write a temporary file,
// fsync it, rename it over the target, fsync the directory. Checkpoints,
// cursors, markers and manifests use it. Functions are safe for concurrent
// use on different paths.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data (mode perm when it is created). The
// temporary file, path+".tmp", is removed when the write fails.
func Write(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, making the entries created, renamed or
// removed in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
